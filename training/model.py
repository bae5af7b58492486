"""The next-item model: item embedding -> dropout -> LSTM/GRU -> projection, scored against the tied
item embeddings plus a per-item bias.

Inputs are left-padded with 0 (the dataset contract). A recurrent net run over the padding would
carry a bias-driven state into the real items, so a user's prediction would depend on how much
padding they got; the forward pass moves each row's items to the front (left-aligned), runs the
recurrence, and maps the outputs back, which makes every real position independent of the padding
and zeroes the pad ones.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

PADDING_IDX = 0
WEIGHTS_FILE = "model.pt"
ARCHITECTURE_FILE = "architecture.json"
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class LSTMRecommender(nn.Module):
    def __init__(self, num_items: int, embedding_dim: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", dropout: float = 0.2):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if num_items < 2:
            raise ValueError(f"num_items must count padding plus at least one item, got {num_items}")
        self.arch = {"num_items": num_items, "embedding_dim": embedding_dim,
                     "hidden_size": hidden_size, "num_layers": num_layers, "cell": cell,
                     "dropout": dropout}
        self.item_embedding = nn.Embedding(num_items, embedding_dim, padding_idx=PADDING_IDX)
        self.dropout = nn.Dropout(dropout)
        self.rnn = CELLS[cell](embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.projection = nn.Linear(hidden_size, embedding_dim)
        self.item_bias = nn.Parameter(torch.zeros(num_items))
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
        h = self.projection(out) * (positions[:, :steps] < lengths.unsqueeze(1)).unsqueeze(-1)
        h = F.pad(h, (0, 0, 0, length - steps))
        # Back to left padding: position j reads aligned position (j - (L - n)) mod L.
        return h.gather(1, ((positions - shift) % length).unsqueeze(-1).expand(-1, -1, h.shape[-1]))

    def last_hidden(self, input: torch.Tensor) -> torch.Tensor:
        """[B, D] state after each user's most recent item (the last column, inputs being left-padded)."""
        return self.forward(input)[:, -1]

    def score_all(self, h: torch.Tensor) -> torch.Tensor:
        """Scores [..., num_items] of every item; padding index 0 gets -inf so it is never chosen."""
        scores = h @ self.item_embedding.weight.t() + self.item_bias
        scores[..., PADDING_IDX] = float("-inf")
        return scores

    def score_items(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of chosen items: ``h`` [..., D] against ``items`` [..., M] -> [..., M]."""
        items = items.long()
        return (self.item_embedding(items) @ h.unsqueeze(-1)).squeeze(-1) + self.item_bias[items]


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
    old_arch = {k: v for k, v in previous.arch.items() if k != "num_items"}
    new_arch = {k: v for k, v in model.arch.items() if k != "num_items"}
    if old_arch != new_arch:
        raise ValueError(f"cannot warm-start: architecture changed from {old_arch} to {new_arch}")
    if previous.num_items > model.num_items:
        raise ValueError(f"cannot warm-start: the previous model knows {previous.num_items} items, "
                         f"tonight's vocabulary only {model.num_items}")
    n = previous.num_items
    with torch.no_grad():
        for name, tensor in previous.state_dict().items():
            target = model.state_dict()[name]
            if name in ("item_embedding.weight", "item_bias"):
                target[:n].copy_(tensor)
            else:
                target.copy_(tensor)
