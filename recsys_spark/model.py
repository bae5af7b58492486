"""The next-item model: item embedding -> dropout -> LSTM/GRU -> dropout -> projection, scored
against the tied item embeddings plus a per-item bias, optionally plus a gated last-item transition
term and a held-out blend.

The transition term (``transition_pairs`` not None) adds ``g(h) . [c > 0, log(1 + c), c / c_row]`` to each
candidate's score, where ``c`` is how often the candidate directly followed the query's last item in
the training sequences and ``g`` a learned linear gate on the hidden state. An embedding of a few
hundred dimensions cannot memorise every item's exact successors, which is what last-item
transitions rank by; with the counts as an explicit input the recurrent state only has to decide how
much to trust them (the session intent) and rank within and beyond them. The counts are the
training pairs (``recsys_spark.sequences.transition_counts``), stored as two buffers of the state
dict (sorted pair keys ``prev * num_items + next`` and counts), so the artifact stays a plain
``weights_only`` state dict and every scorer (trainer, evaluator, Spark scoring) computes the same
scores from the model alone. In training each position leaves its own pair out of the counts
(``exclude``): otherwise every target would look like a seen transition, which held-out targets are
not.

The held-out blend (``blend``) adds ``w . [i == last, i in history, c > 0, log(1 + c)]`` to each
candidate ``i``: the query's own items, for data where they may be recommended again (a quarter of
yoochoose's clicks repeat the last one), and, where the model does not learn the transition term
(``learned_transitions`` false), the last item's transition counts. ``w`` is not trained with the
rest: fitted on the training positions, a model that memorises the training successors trusts them
over a return or the counts more than held-out sessions warrant, so the weights are chosen afterwards
on the validation split (``training.trainer.calibrate_blend``), as interpolation weights are
estimated on held-out data. They are a buffer of the state dict, so every scorer computes the same
scores from the model alone.

Inputs are left-padded with 0 (the dataset contract). A recurrent net run over the padding would
carry a bias-driven state into the real items, so a user's prediction would depend on how much
padding they got; the forward pass moves each row's items to the front (left-aligned), runs the
recurrence, and maps the outputs back, which makes every real position independent of the padding
and zeroes the pad ones.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

PADDING_IDX = 0
WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "architecture.json"
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
TRANSITION_KEYS = "transition_keys"
TRANSITION_COUNTS = "transition_counts"
TRANSITION_FEATURES = ("followed", "log1p_count", "row_share")
BLEND_WEIGHTS = "blend_weights"
BLEND_FEATURES = ("is_last", "in_history", "followed", "log1p_count")


class LSTMRecommender(nn.Module):
    def __init__(self, num_items: int, embedding_dim: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", dropout: float = 0.2,
                 transition_pairs: Optional[int] = None, hidden_dropout: float = 0.0,
                 blend: bool = False, learned_transitions: bool = True):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if num_items < 2:
            raise ValueError(f"num_items must count padding plus at least one item, got {num_items}")
        self.arch = {"num_items": num_items, "embedding_dim": embedding_dim,
                     "hidden_size": hidden_size, "num_layers": num_layers, "cell": cell,
                     "dropout": dropout}
        if transition_pairs is not None:  # absent from older artifacts, which load as before
            self.arch["transition_pairs"] = transition_pairs
            if not learned_transitions:  # the counts only feed the blend
                self.arch["learned_transitions"] = False
        if hidden_dropout:  # likewise
            self.arch["hidden_dropout"] = hidden_dropout
        if blend:  # likewise
            self.arch["blend"] = True
        self.item_embedding = nn.Embedding(num_items, embedding_dim, padding_idx=PADDING_IDX)
        self.dropout = nn.Dropout(dropout)
        self.hidden_dropout = nn.Dropout(hidden_dropout)
        self.rnn = CELLS[cell](embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.projection = nn.Linear(hidden_size, embedding_dim)
        self.item_bias = nn.Parameter(torch.zeros(num_items))
        if transition_pairs is not None:
            self.register_buffer(TRANSITION_KEYS, torch.zeros(transition_pairs, dtype=torch.long))
            self.register_buffer(TRANSITION_COUNTS, torch.zeros(transition_pairs))
        if self.uses_transitions:
            self.transition_gate = nn.Linear(embedding_dim, len(TRANSITION_FEATURES))
            # Start as "the transitions decide among their candidates": weight log(1 + c) by 1.
            nn.init.zeros_(self.transition_gate.weight)
            with torch.no_grad():
                self.transition_gate.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
        if blend:
            self.register_buffer(BLEND_WEIGHTS, torch.zeros(len(BLEND_FEATURES)))
        # Unit-variance embeddings make the initial tied dot products huge; scale by 1/sqrt(D).
        nn.init.normal_(self.item_embedding.weight, std=embedding_dim ** -0.5)
        with torch.no_grad():
            self.item_embedding.weight[PADDING_IDX].zero_()

    @property
    def num_items(self) -> int:
        return self.arch["num_items"]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, D] for left-padded item indices [B, L]; zero at padding positions."""
        input = input.long()
        batch, length = input.shape
        lengths = (input != PADDING_IDX).sum(dim=1)
        # Left-padded row with n items -> left-aligned: position i reads position (L - n + i) mod L.
        positions = torch.arange(length, device=input.device).unsqueeze(0)
        shift = (length - lengths).unsqueeze(1)
        aligned = input.gather(1, (positions + shift) % length)
        # Left-aligned, the recurrence is causal: a real position never sees the trailing padding,
        # so the plain (fused) RNN over the longest row gives the packed result. Packing would make
        # CPU autograd run one small kernel per time step (3-5x slower backward).
        steps = max(int(lengths.max()), 1) if batch else 1
        out, _ = self.rnn(self.dropout(self.item_embedding(aligned[:, :steps])))
        real = (positions[:, :steps] < lengths.unsqueeze(1)).unsqueeze(-1)
        h = self.projection(self.hidden_dropout(out)) * real
        h = F.pad(h, (0, 0, 0, length - steps))
        # Back to left padding: position j reads aligned position (j - (L - n)) mod L.
        return h.gather(1, ((positions - shift) % length).unsqueeze(-1).expand(-1, -1, h.shape[-1]))

    @property
    def uses_transitions(self) -> bool:
        """The learned (gated) transition term."""
        return self.has_transition_counts and self.arch.get("learned_transitions", True)

    @property
    def has_transition_counts(self) -> bool:
        return "transition_pairs" in self.arch

    def set_transitions(self, prev: torch.Tensor, next: torch.Tensor, count: torch.Tensor) -> None:
        """Load the training pair counts (one row per distinct (prev, next) pair) into the buffers."""
        keys = prev.long() * self.num_items + next.long()
        if len(keys) != len(self.transition_keys):
            raise ValueError(f"{len(keys)} transition pairs, the model was built for "
                             f"{len(self.transition_keys)}")
        if len(keys) and (prev.min() < 1 or next.min() < 1 or max(prev.max(), next.max()) >= self.num_items):
            raise ValueError(f"transition pair item outside [1, {self.num_items})")
        order = torch.argsort(keys)
        keys = keys[order]
        if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
            raise ValueError("duplicate transition pairs: counts must be aggregated per pair")
        self.transition_keys.copy_(keys)
        self.transition_counts.copy_(count.float()[order])

    def last_hidden(self, input: torch.Tensor) -> torch.Tensor:
        """[B, D] state after each user's most recent item (the last column, inputs being left-padded)."""
        return self.forward(input)[:, -1]

    def score_next(self, input: torch.Tensor) -> torch.Tensor:
        """Scores [B, num_items] of every item as the next one after left-padded ``input`` [B, L]:
        what every scorer ranks by."""
        input = input.long()
        return self.score_all(self.last_hidden(input), input[:, -1], history=input)

    def score_all(self, h: torch.Tensor, last: Optional[torch.Tensor] = None,
                  exclude: Optional[torch.Tensor] = None,
                  history: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scores [P, num_items] of every item for states ``h`` [P, D] whose last items are ``last``
        [P] (needed with transitions; ``exclude`` [P]: a pair to leave out of each row's counts)
        and whose left-padded history windows are ``history`` [P, L] (needed with the blend);
        padding index 0 gets -inf so it is never chosen."""
        scores = h @ self.item_embedding.weight.t() + self.item_bias
        if self.uses_transitions:
            scores = scores + self.transition_term(h, self.transition_rows(last, exclude))
        if self.uses_blend:
            scores = scores + self.blend_term(history)
        scores[..., PADDING_IDX] = float("-inf")
        return scores

    @property
    def uses_blend(self) -> bool:
        return "blend" in self.arch

    def blend_features(self, history: Optional[torch.Tensor],
                       include: tuple[bool, ...] = (True,) * len(BLEND_FEATURES)) -> list[Optional[torch.Tensor]]:
        """One [P, num_items] tensor per BLEND_FEATURES for left-padded ``history`` [P, L] (the last
        item in the last column); None for a feature not in ``include`` and for the transition
        features of a model without counts (each is a dense catalogue-wide tensor: build only what
        is weighted)."""
        if history is None:
            raise ValueError("a model with the blend needs each query's history")
        history = history.long()
        rows = torch.arange(len(history), device=history.device).unsqueeze(1)

        def indicator(columns: torch.Tensor) -> torch.Tensor:
            feature = torch.zeros(len(history), self.num_items, device=history.device)
            feature[rows, columns] = 1.0
            feature[:, PADDING_IDX] = 0.0
            return feature

        features: list[Optional[torch.Tensor]] = [None] * len(BLEND_FEATURES)
        if include[0]:
            features[0] = indicator(history[:, -1:])
        if include[1]:
            features[1] = indicator(history)
        if self.has_transition_counts and (include[2] or include[3]):
            counts = self.transition_rows(history[:, -1])
            counts[:, PADDING_IDX] = 0.0
            features[2] = (counts > 0).float() if include[2] else None
            features[3] = torch.log1p(counts) if include[3] else None
        return features

    def blend_term(self, history: Optional[torch.Tensor]) -> torch.Tensor:
        """The blend [P, num_items] over left-padded ``history`` [P, L]."""
        weights = self.blend_weights.tolist()
        features = self.blend_features(history, tuple(w != 0 for w in weights))
        term = torch.zeros(len(history), self.num_items, device=history.device)
        for weight, feature in zip(weights, features):
            if feature is not None:
                term = term + weight * feature
        return term

    def blend_at(self, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The blend of chosen ``items`` [P, M] after ``history`` [P, L] -> [P, M], from lookups
        (equals ``blend_term(history).gather(-1, items)`` without catalogue-wide rows)."""
        history, items = history.long(), items.long()
        weights = self.blend_weights.tolist()
        values = [items == history[:, -1:], (items.unsqueeze(-1) == history.unsqueeze(1)).any(-1)]
        if self.has_transition_counts:
            counts = self.transition_lookup(history[:, -1], items)
            values += [counts > 0, torch.log1p(counts)]
        term = torch.zeros(items.shape, device=items.device)
        for weight, value in zip(weights, values):
            if weight:
                term = term + weight * value.float()
        return term.masked_fill(items == PADDING_IDX, 0.0)

    def _pairs_after(self, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, index into the pair buffers) of every stored pair that starts at ``last[row]``."""
        n = self.num_items
        start = torch.searchsorted(self.transition_keys, last * n)
        lengths = torch.searchsorted(self.transition_keys, (last + 1) * n) - start
        rows = torch.repeat_interleave(torch.arange(len(last), device=last.device), lengths)
        return rows, _ranges(start, lengths)

    def transition_rows(self, last: torch.Tensor, exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Dense counts [P, num_items] of the items that followed each of ``last`` [P] (0 for
        padding or an item never followed), minus one at ``exclude`` [P] where given."""
        if last is None:
            raise ValueError("a model with transitions needs each query's last item")
        rows, pairs = self._pairs_after(last.long())
        n = self.num_items
        dense = torch.zeros(len(last), n, device=self.transition_counts.device)
        dense[rows, self.transition_keys[pairs] % n] = self.transition_counts[pairs]
        if exclude is not None:
            rows = torch.arange(len(last), device=last.device)
            dense[rows, exclude.long()] = (dense[rows, exclude.long()] - 1).clamp(min=0)
        return dense

    def transition_lookup(self, last: torch.Tensor, items: torch.Tensor,
                          exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Counts of chosen pairs: ``last`` [...] followed by ``items`` [..., M] -> [..., M] (minus one
        where an item equals ``exclude`` [...]): for sampled losses, without dense rows."""
        keys = last.long().unsqueeze(-1) * self.num_items + items.long()
        if len(self.transition_keys) == 0:
            return torch.zeros(keys.shape, device=keys.device)
        pos = torch.searchsorted(self.transition_keys, keys.reshape(-1)).clamp(max=len(self.transition_keys) - 1)
        found = self.transition_keys[pos] == keys.reshape(-1)
        counts = torch.where(found, self.transition_counts[pos], torch.zeros(())).reshape(keys.shape)
        if exclude is not None:
            counts = torch.where(items == exclude.long().unsqueeze(-1), (counts - 1).clamp(min=0), counts)
        return counts

    def transition_term(self, h: torch.Tensor, counts: torch.Tensor,
                         row_total: Optional[torch.Tensor] = None) -> torch.Tensor:
        """g(h) . [c > 0, log(1 + c), c / row total] for counts [..., M] of states h [..., D]: the
        indicator lets a rare pair rank above every unseen one (as transitions rank) without
        over-weighting frequent pairs."""
        total = counts.sum(-1, keepdim=True) if row_total is None else row_total
        gate = self.transition_gate(h)
        return (gate[..., :1] * (counts > 0) + gate[..., 1:2] * torch.log1p(counts)
                + gate[..., 2:] * counts / total.clamp(min=1.0))

    def add_transition_term_sorted(self, scores: torch.Tensor, h: torch.Tensor, last: torch.Tensor,
                                   candidates: torch.Tensor, row_total: torch.Tensor) -> torch.Tensor:
        """``scores`` [P, M] plus the transition term of the sorted ``candidates`` [M] (repeats
        allowed) after each of ``last`` [P], touching only the pairs that occurred: the term is zero
        without a count, and a row holds few of a large catalogue's items. Equals adding
        ``transition_term(h, transition_lookup(last, candidates), row_total)``."""
        rows, pairs = self._pairs_after(last.long())
        follower = self.transition_keys[pairs] % self.num_items
        low = torch.searchsorted(candidates, follower)
        columns_each = torch.searchsorted(candidates, follower, right=True) - low  # repeats of it
        rows = torch.repeat_interleave(rows, columns_each)
        count = torch.repeat_interleave(self.transition_counts[pairs], columns_each)
        columns = _ranges(low, columns_each)
        gate = self.transition_gate(h)[rows]
        values = (gate[:, 0] + gate[:, 1] * torch.log1p(count)
                  + gate[:, 2] * count / row_total[rows, 0].clamp(min=1.0))
        return scores.index_put((rows, columns), values, accumulate=True)

    def row_totals(self, last: torch.Tensor, exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pairs out of each of ``last`` [...] -> [..., 1] (one fewer where ``exclude`` is given and
        that pair exists)."""
        n = self.num_items
        cum = torch.cat([torch.zeros(1, device=last.device), torch.cumsum(self.transition_counts, 0)])
        start = torch.searchsorted(self.transition_keys, last.long() * n)
        stop = torch.searchsorted(self.transition_keys, (last.long() + 1) * n)
        total = cum[stop] - cum[start]
        if exclude is not None:
            raw = self.transition_lookup(last, exclude.long().unsqueeze(-1)).squeeze(-1)
            total = total - (raw > 0).float()
        return total.unsqueeze(-1)

    def score_items(self, h: torch.Tensor, items: torch.Tensor, last: Optional[torch.Tensor] = None,
                    exclude: Optional[torch.Tensor] = None,
                    history: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scores of chosen items: ``h`` [..., D] against ``items`` [..., M] -> [..., M]; with
        transitions, ``last`` [...] (and ``exclude``), with the blend ``history`` [P, L]
        (``h`` [P, D]), as in :meth:`score_all`."""
        items = items.long()
        scores = (self.item_embedding(items) @ h.unsqueeze(-1)).squeeze(-1) + self.item_bias[items]
        if self.uses_transitions:
            if last is None:
                raise ValueError("a model with transitions needs each query's last item")
            counts = self.transition_lookup(last, items, exclude)
            scores = scores + self.transition_term(h, counts, self.row_totals(last, exclude))
        if self.uses_blend:
            scores = scores + self.blend_at(history, items)
        return scores


def _ranges(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenated ``arange(start, start + length)`` for each pair, without a Python loop."""
    offsets = torch.arange(int(lengths.sum()), device=starts.device) \
        - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    return offsets + torch.repeat_interleave(starts, lengths)


def save_model(model: LSTMRecommender, directory: str | Path) -> None:
    """Weights as a plain state_dict (``torch.load(..., weights_only=True)`` safe) plus architecture."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                       directory / WEIGHTS_FILE)
    _atomic_write_text(directory / ARCHITECTURE_FILE, json.dumps(model.arch, indent=2, sort_keys=True))


def load_model(directory: str | Path, map_location: str = "cpu") -> LSTMRecommender:
    """Rebuild the model from ``architecture.json`` and load ``model.pt``; returned in eval mode."""
    directory = Path(directory)
    arch: dict[str, Any] = json.loads((directory / ARCHITECTURE_FILE).read_text())
    model = LSTMRecommender(**arch)
    state = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def warm_start(model: LSTMRecommender, previous: LSTMRecommender) -> None:
    """Initialise ``model`` from yesterday's ``previous``: same architecture, a vocabulary that only
    grew (item indices are append-only), so old rows are copied and new items keep their fresh init."""
    nightly = ("num_items", "transition_pairs")  # tonight's vocabulary and counts, not yesterday's
    old_arch = {k: v for k, v in previous.arch.items() if k not in nightly}
    new_arch = {k: v for k, v in model.arch.items() if k not in nightly}
    if previous.uses_transitions != model.uses_transitions:
        raise ValueError("cannot warm-start: the previous model and this one differ in transitions")
    if old_arch != new_arch:
        raise ValueError(f"cannot warm-start: architecture changed from {old_arch} to {new_arch}")
    if previous.num_items > model.num_items:
        raise ValueError(f"cannot warm-start: the previous model knows {previous.num_items} items, "
                         f"tonight's vocabulary only {model.num_items}")
    n = previous.num_items
    with torch.no_grad():
        for name, tensor in previous.state_dict().items():
            if name in (TRANSITION_KEYS, TRANSITION_COUNTS):
                continue
            target = model.state_dict()[name]
            if name in ("item_embedding.weight", "item_bias"):
                target[:n].copy_(tensor)
            else:
                target.copy_(tensor)
