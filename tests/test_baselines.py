"""Each baseline on tiny hand-checked sequences, with a twin on bad (or shuffled) data that fails."""
import datetime as dt

import numpy as np
import pytest
import torch

from recsys_spark import baselines as B
from recsys_spark.config import EvaluateConfig

T0 = dt.datetime(2026, 11, 1)
SCHEMA = "user_id string, item_idx array<int>, ts array<timestamp>"


def seqs(spark, rows, start_day=0):
    """rows: (user, [items]); event k of user j is at T0 + start_day + j days + k minutes."""
    data = [(u, items, [T0 + dt.timedelta(days=start_day + j, minutes=k) for k in range(len(items))])
            for j, (u, items) in enumerate(rows)]
    return spark.createDataFrame(data, SCHEMA)


def q(*rows, width=4):
    """Left-padded LongTensor of query histories."""
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for r, items in enumerate(rows):
        out[r, width - len(items):] = torch.tensor(items)
    return out


NONE = torch.zeros(1, 1, dtype=torch.long)


@pytest.fixture(scope="module")
def data(spark):
    # item 1 x4, item 2 x3, item 3 x2, item 4 x1, item 5 never; 6 slots (index 0 = padding)
    return B.prepare_fit_data(seqs(spark, [("a", [1, 2, 3]), ("b", [1, 2, 1]), ("c", [2, 1, 3, 4])]), 6)


def test_item_counts_and_most_popular(data):
    assert data.popularity.tolist() == [0, 4, 3, 2, 1, 0]
    scores = B.MostPopular(data).score_batch(q([3], [1, 2]), NONE)
    assert scores.dtype == torch.float32 and scores.shape == (2, 6)
    assert scores[0].tolist() == [0, 4, 3, 2, 1, 0] and torch.equal(scores[0], scores[1])


def test_fit_data_twin_rejects_out_of_vocabulary_and_misaligned_rows(spark):
    with pytest.raises(ValueError, match="item indices outside"):
        B.prepare_fit_data(seqs(spark, [("a", [1, 6])]), 6)
    misaligned = spark.createDataFrame([("a", [1, 2], [T0])], SCHEMA)
    with pytest.raises(ValueError, match="different lengths"):
        B.prepare_fit_data(misaligned, 6)


def test_recently_popular_ranks_last_week_first(spark):
    old = [("o1", [1, 1, 1, 2]), ("o2", [1, 1])]  # days 0-1: item 1 is the all-time favourite
    new = [("n1", [3, 2])]  # day 20: items 3 and 2 are what is happening now
    fit = seqs(spark, old).unionByName(seqs(spark, new, start_day=20))
    baseline = B.RecentlyPopular(B.prepare_fit_data(fit, 5), days=7)
    assert baseline.cutoff == T0 + dt.timedelta(days=20, minutes=1)
    scores = baseline.score_batch(q([4]), NONE)[0]
    # recent 2 and 3 tie on recent count (1 each); 2 wins on all-time count; then 1, then 4 (unseen)
    assert scores[2] > scores[3] > scores[1] > scores[4]


def test_recently_popular_twin_with_a_one_day_window_drops_the_week(spark):
    fit = seqs(spark, [("a", [1, 1, 1]), ("b", [2])], start_day=0).unionByName(
        seqs(spark, [("c", [3])], start_day=5))
    data = B.prepare_fit_data(fit, 4)
    week = B.RecentlyPopular(data, days=7).score_batch(NONE, NONE)[0]
    day = B.RecentlyPopular(data, days=1).score_batch(NONE, NONE)[0]
    assert week[1] > week[3]  # within the week, item 1 is recent and most counted
    assert day[3] > day[1]  # only item 3 happened in the last day


def test_transitions_follow_the_last_item_then_popularity(data):
    baseline = B.Transitions(data)
    # pairs: 1->2 x2, 2->3, 2->1 x2, 1->3, 3->4 ; after 2: item 1 (2), item 3 (1), then popularity
    assert baseline.num_pairs == 5
    counts = baseline.counts_after(np.array([2, 4]))
    assert counts[0].tolist() == [0, 2, 0, 1, 0, 0] and counts[1].sum() == 0
    scores = baseline.score_batch(q([5, 2], [4]), NONE)
    first = torch.sort(scores[0], descending=True, stable=True).indices.tolist()
    assert first[:4] == [1, 3, 2, 4]  # transitions 1, 3; then popularity among the rest: 2 before 4
    # last item 4 was never followed: pure popularity order
    assert torch.sort(scores[1], descending=True, stable=True).indices.tolist()[:4] == [1, 2, 3, 4]


def test_transitions_twin_reversed_sequences_change_the_answer(spark, data):
    reversed_fit = B.prepare_fit_data(seqs(spark, [("a", [3, 2, 1]), ("b", [1, 2, 1]),
                                                   ("c", [4, 3, 1, 2])]), 6)
    assert not torch.equal(B.Transitions(reversed_fit).counts_after(np.array([2])),
                           B.Transitions(data).counts_after(np.array([2])))
    with pytest.raises(ValueError, match="query item outside"):
        B.Transitions(data).score_batch(q([7]), NONE)


def test_exact_float32_keeps_order_and_ties_of_huge_keys():
    keys = torch.tensor([[2 ** 40 + 1, 2 ** 40, 2 ** 40 + 1, 5]])
    out = B.exact_float32(keys)
    assert out.dtype == torch.float32 and out.tolist() == [[3.0, 2.0, 3.0, 1.0]]
    assert B.exact_float32(torch.tensor([[3, 1]])).tolist() == [[3.0, 1.0]]


def test_top_k_breaks_ties_by_lower_index():
    scores = torch.tensor([[1.0, 3.0, 3.0, float("nan"), 3.0, -float("inf")]])
    assert B.top_k_indices(scores, 2).tolist() == [[1, 2]]
    assert B.top_k_indices(scores, 4).tolist() == [[1, 2, 4, 0]]
    assert B.top_k_mask(scores, 6).tolist() == [[True, True, True, False, True, False]]


@pytest.fixture(scope="module")
def sessions(spark):
    # s1 oldest ... s4 newest (each starts one day later)
    return B.prepare_fit_data(seqs(spark, [("s1", [1, 2, 3]), ("s2", [2, 4]), ("s3", [5, 6]),
                                           ("s4", [2, 5])]), 8)


def test_sknn_scores_are_summed_neighbour_similarities(sessions):
    query = q([1, 2])  # weights (div): item 2 (last) 1, item 1 1/2
    knn = B.SequenceKNN(sessions, k=10, sample_size=0, decay="div")
    scores = knn.score_batch(query, NONE)[0]
    # sim: s1 = 1.5, s2 = 1, s4 = 1, s3 = 0
    expected = {1: 1.5, 2: 3.5, 3: 1.5, 4: 1.0, 5: 1.0, 6: 0.0, 7: 0.0}
    assert {i: round(float(scores[i]), 6) for i in expected} == expected
    # k=2: s1 and, of the tied s2/s4, the more recent s4
    top2 = B.SequenceKNN(sessions, k=2, sample_size=0, decay="div").score_batch(query, NONE)[0]
    assert float(top2[4]) == 0.0 and float(top2[5]) == 1.0 and float(top2[3]) == 1.5
    # sample_size=2: only the two most recent sessions sharing an item (s4, s2) are candidates
    recent = B.SequenceKNN(sessions, k=10, sample_size=2, decay="div").score_batch(query, NONE)[0]
    assert float(recent[3]) == 0.0 and float(recent[4]) == 1.0 and float(recent[5]) == 1.0
    # linear decay: weights p/len -> item 1 0.5, item 2 1 (same here); 'same': item 1 weighs 1
    same = B.SequenceKNN(sessions, k=10, sample_size=0, decay="same").score_batch(query, NONE)[0]
    assert float(same[3]) == 2.0


def test_sknn_twin_unrelated_query_and_bad_decay(sessions):
    knn = B.SequenceKNN(sessions, k=10, sample_size=0)
    assert knn.score_batch(q([7]), NONE).abs().sum() == 0  # shares no item: no neighbours at all
    with pytest.raises(ValueError, match="unknown decay"):
        B.SequenceKNN(sessions, decay="exp")


def test_position_weights_of_left_padded_input():
    w = B.position_weights(q([3, 4, 5]), "linear")
    assert torch.allclose(w, torch.tensor([[0.0, 1 / 3, 2 / 3, 1.0]]))
    assert torch.allclose(B.position_weights(q([3, 4]), "div"), torch.tensor([[0.0, 0.0, 0.5, 1.0]]))


def test_als_fold_in_reproduces_spark_user_factors(spark):
    fit = seqs(spark, [("a", [1, 2, 3, 1]), ("b", [2, 3, 4]), ("c", [4, 5, 6]), ("d", [1, 3, 6, 6])])
    data = B.prepare_fit_data(fit, 8)
    als = B.ALSBaseline(data, rank=4, max_iter=5, reg=0.1, alpha=2.0, seed=3)
    users = {r["user_id"]: r["u"] for r in als.users.collect()}
    factors = {r["id"]: np.array(r["features"]) for r in als.model.userFactors.collect()}
    histories = {"a": [1, 2, 3, 1], "b": [2, 3, 4], "c": [4, 5, 6], "d": [1, 3, 6, 6]}
    folded = als.user_vectors(q(*histories.values()))
    for row, user in enumerate(histories):
        # Spark's last half-iteration solves the user vectors from the final item factors: the same
        # normal equations, so fold-in must land on them (up to float32 rounding).
        np.testing.assert_allclose(folded[row].numpy(), factors[users[user]], rtol=2e-3, atol=2e-4)
    scores = als.score_batch(q([4, 5]), NONE)
    assert scores.shape == (1, 8) and scores.dtype == torch.float32
    # twin: a history the user never had gives a different vector
    assert not np.allclose(als.user_vectors(q([5, 6]))[0].numpy(), factors[users["a"]], atol=1e-2)


def test_build_baseline_by_name(data):
    ev = EvaluateConfig()
    assert [B.build_baseline(n, data, ev).name for n in B.BASELINES[:4]] == list(B.BASELINES[:4])
    with pytest.raises(ValueError, match="unknown baseline"):
        B.build_baseline("random", data, ev)


def test_transitions_float32_fast_path_orders_like_the_exact_keys(data):
    baseline = B.Transitions(data)
    query = q([5, 2], [4], [1], [3])
    fast = baseline.score_batch(query, NONE)
    baseline._float32_exact = False
    exact = baseline.score_batch(query, NONE)
    for f, e in zip(fast, exact):  # same order and the same ties, row by row
        assert torch.equal(f.unsqueeze(0) < f.unsqueeze(1), e.unsqueeze(0) < e.unsqueeze(1))
