"""Full-ranking metrics shared by training validation, offline evaluation and the baselines.

One rank per user: the held-out target is ranked against every item of the catalogue except the
masked ones (the user's seen items and padding index 0). Ties count against the target (the
conservative rule of DESIGN.md), so a model that scores everything equally gets the worst rank, not
the best, and a constant baseline cannot look good by accident.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

PADDING_IDX = 0
DEFAULT_KS = (1, 5, 10, 20)


def seen_mask(seen: Sequence[Iterable[int]], num_items: int,
              device: Optional[torch.device] = None) -> torch.Tensor:
    """BoolTensor[B, num_items], True at each row's seen items and at padding index 0.

    ``seen`` is one iterable of item indices per row (ragged lists or a 0-padded 2-D array);
    indices outside ``[0, num_items)`` are an error rather than silently dropped.
    """
    mask = torch.zeros(len(seen), num_items, dtype=torch.bool, device=device)
    mask[:, PADDING_IDX] = True
    for row, items in enumerate(seen):
        idx = torch.as_tensor(np.asarray(items, dtype=np.int64).reshape(-1), device=device)
        if idx.numel():
            if int(idx.min()) < 0 or int(idx.max()) >= num_items:
                raise ValueError(f"row {row}: seen item outside [0, {num_items})")
            mask[row, idx] = True
    return mask


def target_ranks(scores: torch.Tensor, target: torch.Tensor,
                 mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Conservative 1-based rank of ``target[b]`` among the scores of row ``b``.

    rank = 1 + number of competitors with score >= the target's score, where competitors are all
    items except the target itself, padding index 0 and items where ``mask`` is True. A masked
    target is still ranked (the mask only removes competitors). NaN scores are treated as -inf, so a
    NaN target ranks below every competitor that has a real score and ties with the other NaNs.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, N], got shape {tuple(scores.shape)}")
    target = target.to(device=scores.device, dtype=torch.long).reshape(-1)
    if target.numel() != scores.shape[0]:
        raise ValueError(f"{target.numel()} targets for {scores.shape[0]} score rows")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= scores.shape[1]):
        raise ValueError(f"target index outside [0, {scores.shape[1]})")
    scores = torch.nan_to_num(scores.float(), nan=-math.inf)
    target_score = scores.gather(1, target.unsqueeze(1))
    beats = scores >= target_score
    beats[:, PADDING_IDX] = False
    if mask is not None:
        beats &= ~mask.to(device=scores.device, dtype=torch.bool)
    beats.scatter_(1, target.unsqueeze(1), False)
    return 1 + beats.sum(dim=1)


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``hr@k`` (= recall@k with one target), ``ndcg@k`` and ``mrr@k`` averaged over users.

    Ranks that are NaN or <= 0 mean "no test item" and are left out of the average (they are not
    counted as misses). A k beyond the catalogue size is fine: every valid rank is then within it.
    With no valid rank at all every metric is NaN, never a misleading 0.
    """
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    valid = ranks[np.isfinite(ranks) & (ranks > 0)]
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if valid.size == 0:
            out.update({f"hr@{k}": math.nan, f"ndcg@{k}": math.nan, f"mrr@{k}": math.nan})
            continue
        hit = valid <= k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(valid + 1.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / valid, 0.0).mean())
    return out
