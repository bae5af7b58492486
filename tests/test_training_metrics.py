"""Full-ranking metrics against hand-computed values: ties, masking, k > catalogue, no test item."""
import math

import numpy as np
import pytest
import torch

from recsys_spark.metrics import ranking_metrics, seen_mask, target_ranks


def test_rank_counts_ties_against_target_and_ignores_padding():
    # items 0..4; column 0 is padding and never competes even with the highest score.
    scores = torch.tensor([[9.0, 0.5, 0.7, 0.5, 0.1],
                           [9.0, 0.1, 0.2, 0.3, 0.4]])
    target = torch.tensor([1, 4])
    # row 0: competitors 2 (0.7 > 0.5) and 3 (tie 0.5) -> rank 3; row 1: best -> rank 1
    assert target_ranks(scores, target).tolist() == [3, 1]


def test_all_equal_scores_give_worst_rank():
    scores = torch.zeros(1, 6)
    assert target_ranks(scores, torch.tensor([2])).tolist() == [5]  # 4 competitors (not 0, not 2)


def test_mask_removes_competitors_but_target_still_ranked():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6]])
    mask = torch.tensor([[False, True, False, True, False]])
    # target 4 (0.6): competitors 2 only (1 and 3 masked) -> rank 2; unmasked it would be 4.
    assert target_ranks(scores, torch.tensor([4]), mask).tolist() == [2]
    assert target_ranks(scores, torch.tensor([4])).tolist() == [4]
    # a masked target is still ranked against the unmasked competitors 2 (0.8) and 4 (0.6)
    assert target_ranks(scores, torch.tensor([1]), mask).tolist() == [1]
    assert target_ranks(scores, torch.tensor([3]), mask).tolist() == [2]


def test_nan_target_is_ranked_last():
    scores = torch.tensor([[0.0, float("nan"), 0.2, 0.1]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [3]


def test_seen_mask_builds_rows_and_rejects_out_of_range():
    mask = seen_mask([[2, 3], [], np.array([0, 0, 1])], 5)
    assert mask.tolist() == [[True, False, True, True, False],
                             [True, False, False, False, False],
                             [True, True, False, False, False]]
    with pytest.raises(ValueError):
        seen_mask([[5]], 5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        target_ranks(torch.zeros(2, 3), torch.tensor([1]))
    with pytest.raises(ValueError):
        target_ranks(torch.zeros(1, 3), torch.tensor([3]))


def test_ranking_metrics_hand_computed():
    ranks = np.array([1, 3, 12, 0, np.nan])  # last two: no test item, excluded
    m = ranking_metrics(ranks, ks=(1, 5, 10, 20))
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["hr@5"] == pytest.approx(2 / 3)
    assert m["hr@10"] == pytest.approx(2 / 3)
    assert m["hr@20"] == pytest.approx(1.0)
    assert m["ndcg@5"] == pytest.approx((1.0 + 1 / math.log2(4)) / 3)
    assert m["ndcg@20"] == pytest.approx((1.0 + 0.5 + 1 / math.log2(13)) / 3)
    assert m["mrr@10"] == pytest.approx((1.0 + 1 / 3) / 3)
    assert m["mrr@20"] == pytest.approx((1.0 + 1 / 3 + 1 / 12) / 3)
    # twin: counting the missing items as misses would have changed every value
    assert ranking_metrics(np.array([1, 3, 12, 10**9, 10**9]))["hr@20"] == pytest.approx(3 / 5)


def test_k_beyond_catalogue_and_no_valid_rank():
    scores = torch.tensor([[0.0, 0.3, 0.2, 0.1]])  # 3 real items
    ranks = target_ranks(scores, torch.tensor([3])).numpy()
    m = ranking_metrics(ranks, ks=(100,))
    assert m == {"hr@100": 1.0, "ndcg@100": pytest.approx(0.5), "mrr@100": pytest.approx(1 / 3)}
    empty = ranking_metrics(np.array([0, -1, np.nan]), ks=(10,))
    assert all(math.isnan(v) for v in empty.values())
    with pytest.raises(ValueError):
        ranking_metrics(np.array([1]), ks=(0,))
