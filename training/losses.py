"""Training losses over next-item targets at every position; padding positions (target 0) never count.

* ``softmax``: full cross-entropy over the catalogue, the exact objective, affordable while
  B*L*num_items fits in memory.
* ``sampled_softmax``: the Spark-built popularity^alpha negatives of each example, plus (optionally)
  the batch's other targets, plus ``shared_negatives`` items drawn per step with probability
  proportional to popularity^alpha and shared by every position of the batch (one [positions, M]
  product: many negatives for the price of a small catalogue). Sampling popular items more often
  biases the softmax towards pushing them down, so each negative's logit is reduced by log(expected
  count under its sampler) (logQ correction; Bengio & Senecal 2008, Yi et al. 2019) to keep the
  estimate close to the full softmax.
* ``bpr_max``: BPR-max of Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for
  Session-based Recommendations" (2018): -log sum_j s_j sigmoid(r_i - r_j) + lambda * sum_j s_j r_j^2
  with s = softmax over the negatives' scores, so the hardest negatives dominate the gradient.

The score-level functions take broadcastable tensors and a validity mask so they can be checked
against hand-computed values; :class:`LossComputer` assembles the candidates from a batch.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from recsys_spark.model import PADDING_IDX, LSTMRecommender

LOSSES = ("softmax", "sampled_softmax", "bpr_max")
AUTO = "auto"


def resolve_loss(kind: str, num_items: int, full_softmax_max_items: int) -> str:
    """``auto``: the exact full softmax while the catalogue is small enough for its [positions,
    catalogue] logits to be cheap, sampled softmax (shared popularity negatives, logQ) beyond."""
    if kind != AUTO:
        return kind
    return "softmax" if num_items - 1 <= full_softmax_max_items else "sampled_softmax"


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp(min=1.0)


def full_softmax_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` [..., N] against ``target`` [...]; target 0 = padding, skipped.

    Column 0 (padding) is excluded from the normaliser whatever its logit.
    """
    logits = logits.clone()
    logits[..., PADDING_IDX] = float("-inf")
    valid = target != PADDING_IDX
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1).long(),
                          reduction="none", ignore_index=PADDING_IDX)
    return _masked_mean(nll, valid.reshape(-1))


def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor,
                         neg_valid: Optional[torch.Tensor] = None,
                         neg_log_q: Optional[torch.Tensor] = None) -> torch.Tensor:
    """-log(exp(pos) / (exp(pos) + sum_j exp(neg_j - log_q_j))) averaged over valid positions.

    ``pos`` [B,L], ``neg`` [B,L,M]; ``neg_valid`` (broadcastable to neg) drops negatives such as
    accidental hits; ``neg_log_q`` (broadcastable) is log of each negative's expected count.
    """
    if neg_log_q is not None:
        neg = neg - neg_log_q
    if neg_valid is not None:
        neg = neg.masked_fill(~neg_valid, float("-inf"))
    logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1)
    nll = torch.logsumexp(logits, dim=-1) - pos
    return _masked_mean(nll, valid)


def bpr_max_loss(pos: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor,
                 neg_valid: Optional[torch.Tensor] = None, reg: float = 1.0) -> torch.Tensor:
    """BPR-max with score regularisation (shapes as in :func:`sampled_softmax_loss`)."""
    neg_valid = torch.ones_like(neg, dtype=torch.bool) if neg_valid is None \
        else neg_valid.expand_as(neg)
    weights = torch.softmax(neg.masked_fill(~neg_valid, float("-inf")), dim=-1)
    weights = torch.nan_to_num(weights)  # a position whose negatives are all masked has no term
    gain = (weights * torch.sigmoid(pos.unsqueeze(-1) - neg)).sum(dim=-1)
    penalty = (weights * neg.pow(2)).sum(dim=-1)
    # The epsilon keeps log finite when every sigmoid underflows; it is far below any real gain.
    loss = -torch.log(gain + 1e-10) + reg * penalty
    return _masked_mean(loss, valid & (neg_valid.sum(dim=-1) > 0))


def log_expected_counts(item_counts: np.ndarray, alpha: float, draws: int) -> torch.Tensor:
    """log(draws * q_j) with q proportional to count^alpha; counts below 1 are raised to 1 so an
    item unseen in the window still has a finite correction. Index 0 (padding) gets +inf."""
    counts = np.maximum(np.asarray(item_counts, dtype=np.float64), 1.0) ** alpha
    counts[PADDING_IDX] = 0.0
    q = counts / counts.sum()
    with np.errstate(divide="ignore"):
        out = np.log(draws * q)
    out[PADDING_IDX] = np.inf
    return torch.as_tensor(out, dtype=torch.float32)


class LossComputer:
    """Builds the loss named by ``train.loss`` for a batch of (input, target, negatives) tensors.

    ``item_counts`` (indexed by item_idx) gives the samplers' proposal distributions: the Spark
    negatives were drawn with count^alpha, the in-batch pool (each example's last target) with the
    raw count, i.e. alpha = 1.
    """

    def __init__(self, kind: str, item_counts: Optional[np.ndarray] = None, negative_alpha: float = 0.75,
                 num_negatives: int = 0, batch_size: int = 0, in_batch: bool = True,
                 logq: bool = True, bpr_reg: float = 1.0, shared_negatives: int = 0):
        if kind not in LOSSES:
            raise ValueError(f"train.loss must be one of {LOSSES}, got {kind!r}")
        self.kind, self.in_batch, self.logq, self.bpr_reg = kind, in_batch, logq, bpr_reg
        self.log_q_neg = self.log_q_batch = self.log_q_shared = None
        self.shared_negatives, self.shared_proposal = shared_negatives if kind != "softmax" else 0, None
        if self.shared_negatives:
            if item_counts is None:
                raise ValueError("shared negatives need item_counts")
            weights = np.maximum(np.asarray(item_counts, dtype=np.float64), 1.0) ** negative_alpha
            weights[PADDING_IDX] = 0.0
            self.shared_proposal = torch.as_tensor(weights / weights.sum(), dtype=torch.float32)
        if kind != "softmax" and logq:
            if item_counts is None:
                raise ValueError("logQ correction needs item_counts")
            self.log_q_neg = log_expected_counts(item_counts, negative_alpha, num_negatives)
            self.log_q_batch = log_expected_counts(item_counts, 1.0, batch_size)
            self.log_q_shared = log_expected_counts(item_counts, negative_alpha, self.shared_negatives or 1)

    def __call__(self, model: LSTMRecommender, h: torch.Tensor, target: torch.Tensor,
                 negatives: torch.Tensor, inputs: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``inputs`` [B, L] (each position's item) is needed by a model with transitions: every
        position is scored with its own pair left out of the counts (see recsys_spark.model)."""
        target = target.long()
        valid = target != PADDING_IDX
        if model.uses_transitions and inputs is None:
            raise ValueError("a model with transitions needs the batch's inputs")
        if self.kind == "softmax":
            # Score only real target positions (short sessions in long windows are mostly padding)
            # and leave the padding column out of the product instead of masking it to -inf: the
            # [positions, catalogue] logits are the dominant cost, and masking them in place costs
            # a copy of them forward and backward. Same value as full_softmax_loss on score_all.
            logits = F.linear(h[valid], model.item_embedding.weight[PADDING_IDX + 1:],
                              model.item_bias[PADDING_IDX + 1:])
            if model.uses_transitions:
                counts = model.transition_rows(inputs[valid], target[valid])
                logits = logits + model.transition_term(h[valid], counts)[:, PADDING_IDX + 1:]
            return F.cross_entropy(logits, target[valid] - (PADDING_IDX + 1))
        # Only real target positions are scored (a window is often mostly padding). Every item's
        # vector comes from one embedding lookup: each lookup's backward fills a catalogue-sized
        # gradient, the main cost past a few thousand items after the products themselves.
        negatives = negatives.long()
        batch = target.shape[0]
        example = valid.nonzero(as_tuple=True)[0]                                 # [P]
        hv, tv = h[valid], target[valid]                                          # [P, D], [P]
        pool = target[:, -1] if self.in_batch and batch > 1 else tv[:0]           # [B] or none
        # Drawn from the torch RNG, which the trainer reseeds per (seed, epoch, rank); sorted, so the
        # transition term can be added at the few (position, item) pairs that occurred.
        shared = (torch.multinomial(self.shared_proposal, self.shared_negatives, replacement=True).sort().values
                  if self.shared_negatives else tv[:0])
        blocks = (tv, negatives.flatten(), pool, shared)
        items, sizes = torch.cat(blocks), [len(b) for b in blocks]
        vectors = model.item_embedding(items).split(sizes)
        biases = model.item_bias[items].split(sizes)
        last = inputs.long()[valid] if model.uses_transitions else None
        totals = model.row_totals(last, tv) if last is not None else None

        def transitions(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
            """``scores`` [P, C] of ``candidates`` [P, C] plus the transition term (pair left out)."""
            if last is None:
                return scores
            return scores + model.transition_term(hv, model.transition_lookup(last, candidates, tv), totals)

        pos = transitions(((vectors[0] * hv).sum(-1) + biases[0]).unsqueeze(-1), tv.unsqueeze(-1)).squeeze(-1)
        # Per-example negatives are shared by the example's positions: [B,L,D] x [B,K,D] -> [B,L,K].
        neg_items = negatives[example]                                            # [P, K]
        neg = transitions(torch.einsum("bld,bkd->blk", h, vectors[1].view(*negatives.shape, -1))[valid]
                          + biases[1].view(negatives.shape)[example], neg_items)
        neg_valid = (neg_items != PADDING_IDX) & (neg_items != tv.unsqueeze(-1))
        log_q = self.log_q_neg[neg_items] if self.log_q_neg is not None else None
        if len(pool):
            pool_scores = transitions(hv @ vectors[2].t() + biases[2], pool.expand(len(tv), -1))  # [P, B]
            own = example.unsqueeze(-1) == torch.arange(batch, device=h.device)
            pool_valid = (pool != PADDING_IDX) & (pool != tv.unsqueeze(-1)) & ~own
            neg = torch.cat([neg, pool_scores], dim=-1)
            neg_valid = torch.cat([neg_valid, pool_valid], dim=-1)
            if log_q is not None:
                log_q = torch.cat([log_q, self.log_q_batch[pool].expand(len(tv), -1)], dim=-1)
        if len(shared):
            shared_scores = hv @ vectors[3].t() + biases[3]                         # [P, M]
            if last is not None:
                shared_scores = model.add_transition_term_sorted(shared_scores, hv, last, shared, totals)
            neg = torch.cat([neg, shared_scores], dim=-1)
            neg_valid = torch.cat([neg_valid, shared != tv.unsqueeze(-1)], dim=-1)  # accidental hits out
            if log_q is not None:
                log_q = torch.cat([log_q, self.log_q_shared[shared].expand(len(tv), -1)], dim=-1)
        valid = torch.ones_like(tv, dtype=torch.bool)
        if self.kind == "sampled_softmax":
            return sampled_softmax_loss(pos, neg, valid, neg_valid, log_q)
        return bpr_max_loss(pos, neg, valid, neg_valid, self.bpr_reg)
