"""The evaluator on a hand-checked example: masking, skipped targets, conservative ties, coverage and
popularity percentile; twins with a constant scorer, a wrong score shape and an unknown item."""
import numpy as np
import pytest
import torch

from recsys_spark import evaluation as E

POPULARITY = np.array([0, 5, 3, 0, 1])  # item 3 never occurs in the fit data
SCORES = torch.tensor([0.0, 0.9, 0.5, 0.99, 0.5])


def queries():
    return E.Queries(key=np.array(["u1", "u2", "u3"]),
                     inputs=np.array([[0, 1], [0, 2], [4, 2]]),
                     targets=np.array([2, 3, 1]),
                     seen=np.array([[1, 0], [2, 0], [4, 2]]))


def fixed(inputs, seen):
    return SCORES.expand(inputs.shape[0], -1)


def run(scorer, mask_seen=True, ks=(1, 2)):
    return E.evaluate(scorer, queries(), POPULARITY, name="fixed", protocol="p", split="s", ks=ks,
                      mask_seen=mask_seen, batch_size=2)


def test_ranks_with_seen_masked_and_unknown_target_skipped():
    result = run(fixed)
    # u1: item 1 seen, item 3 unrankable, item 4 ties with the target -> rank 2; u2 skipped;
    # u3: every competitor of item 1 is seen or unrankable -> rank 1
    assert result.ranks.tolist() == [2, 1]
    assert (result.n_queries, result.n_skipped) == (2, 1)
    assert result.metrics["hr@1"] == 0.5 and result.metrics["hr@2"] == 1.0
    assert result.metrics["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1) / 2)
    assert result.metrics["mrr@2"] == pytest.approx(0.75)
    # top-1 lists: u1 -> item 2 (ties with 4, lower index first), u3 -> item 1: 2 of 3 rankable items
    assert result.metrics["coverage@1"] == pytest.approx(2 / 3)
    # percentiles among rankable items by count (1: 100, 2: 66.7, 4: 33.3)
    assert result.metrics["popularity_pct@1"] == pytest.approx((200 / 3 + 100) / 2)


def test_without_masking_seen_items_compete():
    assert run(fixed, mask_seen=False).ranks.tolist() == [3, 1]


def test_twin_constant_scorer_gets_the_worst_rank_not_the_best():
    result = run(lambda inputs, seen: torch.zeros(inputs.shape[0], 5))
    # u1: competitors 4 (rankable, unseen) -> rank 2; u3: none left -> rank 1
    assert result.ranks.tolist() == [2, 1]
    assert run(lambda inputs, seen: torch.zeros(inputs.shape[0], 5), mask_seen=False).ranks.tolist() == [3, 3]


def test_twin_bad_scores_and_bad_queries_fail_loudly():
    with pytest.raises(ValueError, match="expected"):
        run(lambda inputs, seen: torch.zeros(inputs.shape[0], 4))
    bad = queries()
    bad.inputs[0, 0] = 9
    with pytest.raises(ValueError, match="query input item outside"):
        E.evaluate(fixed, bad, POPULARITY, name="x", protocol="p", split="s")


def test_popularity_percentiles_average_ties():
    assert E.popularity_percentiles(np.array([0, 2, 2, 7, 0])).tolist() == [0, 50, 50, 100, 0]


def test_no_rankable_query_gives_nan_not_zero():
    q = queries().take(np.array([1]))
    result = E.evaluate(fixed, q, POPULARITY, name="x", protocol="p", split="s", ks=(10,))
    assert result.n_queries == 0 and np.isnan(result.metrics["hr@10"])
