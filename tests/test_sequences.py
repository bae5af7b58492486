"""Each sequence-building step on small inline data, compared as whole DataFrames, with a twin on bad data."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from chispa.dataframe_comparer import DataFramesNotEqualError
from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark import sequences as Q

T0 = dt.datetime(2026, 11, 20, 12, 0, 0)


def t(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def events(spark, rows):
    return spark.createDataFrame(rows, S.EVENTS_SCHEMA)


# --- validation ------------------------------------------------------------------------------------

def test_validation_quarantines_each_bad_row_with_its_reason(spark):
    raw = spark.createDataFrame([
        ("u1", "i1", "view", "2026-11-20 10:00:00", None),
        ("u1", "i2", "CART ", "2026-11-20 23:59:59", "s1"),
        (None, "i1", "view", "2026-11-20 10:00:00", None),
        ("u2", " ", "view", "2026-11-20 10:00:00", None),
        ("u2", "i1", "like", "2026-11-20 10:00:00", None),
        ("u2", "i1", "", "2026-11-20 10:00:00", None),
        ("u2", "i1", "view", "yesterday", None),
        ("u2", "i1", "view", "2026-11-21 00:00:00", None),
    ], "user_id string, item_id string, event_type string, ts string, session_id string")
    valid, rejected = Q.validate_events(raw, "2026-11-20", list(S.EVENT_TYPES))
    expected_valid = spark.createDataFrame([
        ("u1", "i1", "view", dt.datetime(2026, 11, 20, 10), None),
        ("u1", "i2", "cart", dt.datetime(2026, 11, 20, 23, 59, 59), "s1"),
    ], S.EVENTS_SCHEMA)
    assert_df_equality(valid, expected_valid, ignore_row_order=True, ignore_nullable=True)
    reasons = sorted(r.reason for r in rejected.collect())
    assert reasons == sorted([Q.MISSING_USER, Q.MISSING_ITEM, Q.UNKNOWN_EVENT_TYPE, Q.MISSING_EVENT_TYPE,
                              Q.BAD_TIMESTAMP, Q.FUTURE_TIMESTAMP])
    # the raw row is kept verbatim for the person who has to fix the producer
    assert rejected.where(F.col(S.REASON) == Q.BAD_TIMESTAMP).first().raw.find('"ts":"yesterday"') > 0


def test_validation_keeps_typed_events_and_rejects_only_the_future(spark):
    raw = events(spark, [("u1", "i1", "view", t(0), None), ("u1", "i1", "view", t(60 * 24), None)])
    valid, rejected = Q.validate_events(raw, "2026-11-20", list(S.EVENT_TYPES))
    assert valid.count() == 1
    assert [r.reason for r in rejected.collect()] == [Q.FUTURE_TIMESTAMP]


def test_rejected_share_gate():
    Q.check_rejected_share(100, 5, 0.05)
    with pytest.raises(Q.DataQualityError, match="6 of 100 events"):
        Q.check_rejected_share(100, 6, 0.05)
    with pytest.raises(Q.DataQualityError, match="no events"):
        Q.check_rejected_share(0, 0, 0.05)


# --- cleaning --------------------------------------------------------------------------------------

def test_deduplicate_drops_only_exact_duplicates(spark):
    raw = events(spark, [("u1", "i1", "view", t(0), "s"), ("u1", "i1", "view", t(0), "s"),
                         ("u1", "i1", "view", t(1), "s"), ("u1", "i1", "cart", t(0), "s")])
    expected = events(spark, [("u1", "i1", "view", t(0), "s"), ("u1", "i1", "view", t(1), "s"),
                              ("u1", "i1", "cart", t(0), "s")])
    assert_df_equality(Q.deduplicate(raw), expected, ignore_row_order=True)


def test_collapse_repeats_uses_time_order_not_row_order(spark):
    # Rows arrive out of order; i1 at t0 and t1 are consecutive in time (the i2 event is later).
    raw = events(spark, [("u1", "i2", "view", t(5), None), ("u1", "i1", "cart", t(1), None),
                         ("u1", "i1", "view", t(0), None), ("u1", "i1", "view", t(9), None),
                         ("u2", "i1", "view", t(0), None)])
    expected = events(spark, [("u1", "i1", "view", t(0), None), ("u1", "i2", "view", t(5), None),
                              ("u1", "i1", "view", t(9), None), ("u2", "i1", "view", t(0), None)])
    assert_df_equality(Q.collapse_repeats(raw), expected, ignore_row_order=True)


def test_event_type_filter(spark):
    raw = events(spark, [("u1", "i1", "view", t(0), None), ("u1", "i2", "purchase", t(1), None)])
    assert_df_equality(Q.filter_event_types(raw, ["purchase"]),
                       events(spark, [("u1", "i2", "purchase", t(1), None)]))


def test_min_support_iterates_until_stable(spark):
    # Round 1 drops i4 (1 event) and with it u2; that leaves i2 with 1 event, so round 2 drops i2 and
    # then u3 (1 event left). Only u1 survives.
    rows = [("u1", "i1", "view", t(k), None) for k in range(3)]
    rows += [("u2", "i2", "view", t(0), None), ("u2", "i4", "view", t(1), None)]
    rows += [("u3", "i1", "view", t(0), None), ("u3", "i2", "view", t(1), None)]
    raw = events(spark, rows)
    filtered, rounds = Q.iterate_min_support(raw, min_item=2, min_user=2, max_rounds=10)
    assert_df_equality(filtered, events(spark, rows[:3]), ignore_row_order=True)
    assert rounds == 3
    single, _ = Q.iterate_min_support(raw, min_item=2, min_user=2, max_rounds=1)
    assert single.select(S.USER_ID).distinct().count() == 2  # one round is not enough on this data


def test_user_whose_only_events_are_filtered_disappears(spark):
    raw = events(spark, [("u1", "i1", "view", t(0), None), ("u1", "i2", "view", t(1), None),
                         ("u2", "rare", "view", t(0), None), ("u2", "rare2", "view", t(1), None),
                         ("u3", "i1", "view", t(0), None), ("u3", "i2", "view", t(1), None)])
    filtered, _ = Q.iterate_min_support(raw, min_item=2, min_user=1, max_rounds=5)
    assert sorted(r.user_id for r in filtered.select(S.USER_ID).distinct().collect()) == ["u1", "u3"]


def test_sessionize_splits_on_inactivity_gap(spark):
    raw = events(spark, [("u1", "i1", "view", t(0), None), ("u1", "i2", "view", t(10), None),
                         ("u1", "i3", "view", t(50), None), ("u2", "i1", "view", t(0), None)])
    expected = events(spark, [("u1", "i1", "view", t(0), "u1-1"), ("u1", "i2", "view", t(10), "u1-1"),
                              ("u1", "i3", "view", t(50), "u1-2"), ("u2", "i1", "view", t(0), "u2-1")])
    assert_df_equality(Q.sessionize(raw, 30), expected, ignore_row_order=True, ignore_nullable=True)
    assert Q.sessionize(raw, 60).select(S.SESSION_ID).distinct().count() == 2


# --- vocabulary ------------------------------------------------------------------------------------

def index_rows(spark, rows):
    return spark.createDataFrame(rows, S.ITEM_INDEX_SCHEMA)


def counts_df(spark, rows):
    return spark.createDataFrame(rows, "item_id string, count long")


def test_item_index_is_stable_across_nights_and_appends_new_items(spark):
    night1 = Q.update_item_index(None, counts_df(spark, [("a", 5), ("b", 9), ("c", 5)]), "2026-11-01")
    assert_df_equality(night1, index_rows(spark, [
        ("b", 1, "2026-11-01", 9, "2026-11-01"), ("a", 2, "2026-11-01", 5, "2026-11-01"),
        ("c", 3, "2026-11-01", 5, "2026-11-01")]), ignore_row_order=True, ignore_nullable=True)
    # night 2: 'a' disappears, 'd' is new
    night2 = Q.update_item_index(night1, counts_df(spark, [("b", 2), ("c", 1), ("d", 4)]), "2026-11-02")
    assert_df_equality(night2, index_rows(spark, [
        ("b", 1, "2026-11-01", 2, "2026-11-02"), ("a", 2, "2026-11-01", 0, "2026-11-02"),
        ("c", 3, "2026-11-01", 1, "2026-11-02"), ("d", 4, "2026-11-02", 4, "2026-11-02")]),
        ignore_row_order=True, ignore_nullable=True)
    # night 3: 'a' returns with its old index; indices are unique and dense
    night3 = Q.update_item_index(night2, counts_df(spark, [("a", 1), ("e", 1)]), "2026-11-03")
    got = {r.item_id: r.item_idx for r in night3.collect()}
    assert got == {"b": 1, "a": 2, "c": 3, "d": 4, "e": 5}


def test_rebuilding_the_index_from_scratch_would_renumber(spark):
    # The twin: without the previous version, tonight's popularity decides the order, so indices move.
    fresh = Q.update_item_index(None, counts_df(spark, [("c", 9), ("b", 1)]), "2026-11-02")
    assert {r.item_id: r.item_idx for r in fresh.collect()} == {"c": 1, "b": 2}


# --- user sequences and splits ---------------------------------------------------------------------

def test_user_sequences_order_by_time_then_item_and_cap(spark):
    raw = events(spark, [("u1", "i3", "view", t(2), None), ("u1", "i2", "view", t(1), None),
                         ("u1", "i1", "view", t(1), None), ("u1", "i4", "view", t(3), None),
                         ("u2", "i1", "view", t(0), None)])
    index = index_rows(spark, [(f"i{k}", k, "d", 1, "d") for k in range(1, 5)])
    got = Q.build_user_sequences(raw, index, "2026-11-20", max_history=3)
    expected = spark.createDataFrame([
        ("u1", [2, 3, 4], [t(1), t(2), t(3)], 4, "2026-11-20"),  # i1/i2 tie at t1 -> item_id order, capped to 3
        ("u2", [1], [t(0)], 1, "2026-11-20")], S.USER_SEQUENCES_SCHEMA)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def sequences_df(spark, rows):
    return spark.createDataFrame([(u, items, [t(k) for k in range(len(items))], len(items), "2026-11-20")
                                  for u, items in rows], S.USER_SEQUENCES_SCHEMA)


def test_leave_last_out_split(spark):
    seqs = sequences_df(spark, [("u1", [1, 2, 3, 4]), ("u2", [5, 6])])
    expected = spark.createDataFrame([("u1", [1, 2], [1, 2], 3, [1, 2, 3], 4),
                                      ("u2", [5, 6], None, None, None, None)], Q.SPLIT_SCHEMA)
    assert_df_equality(Q.split_leave_last_out(seqs), expected, ignore_row_order=True, ignore_nullable=True)


def test_validation_only_split_trains_on_all_but_the_last_item(spark):
    seqs = sequences_df(spark, [("u1", [1, 2, 3, 4]), ("u2", [5])])
    expected = spark.createDataFrame([("u1", [1, 2, 3], [1, 2, 3], 4, None, None),
                                      ("u2", [5], None, None, None, None)], Q.SPLIT_SCHEMA)
    got = Q.split_sequences(seqs, Q.VALIDATION_ONLY, "2026-11-20", 1)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    # Twin: leave-last-out keeps one more item out of training, so the frames differ.
    with pytest.raises(DataFramesNotEqualError):
        assert_df_equality(Q.split_leave_last_out(seqs), expected, ignore_row_order=True, ignore_nullable=True)


def test_validation_fraction_holds_out_a_seeded_sample_of_users(spark):
    seqs = sequences_df(spark, [(f"u{k}", [1, 2, 3]) for k in range(400)])
    held_out = lambda frame: {r.user_id for r in frame.where("val_target IS NOT NULL").collect()}  # noqa: E731
    sample = held_out(Q.split_validation_only(seqs, fraction=0.25, seed=7))
    assert 60 <= len(sample) <= 140
    # Same users for the same seed under another partitioning; another seed draws other users.
    assert held_out(Q.split_validation_only(seqs.repartition(7), fraction=0.25, seed=7)) == sample
    assert held_out(Q.split_validation_only(seqs, fraction=0.25, seed=8)) != sample
    assert len(held_out(Q.split_validation_only(seqs, fraction=1.0, seed=7))) == 400
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        Q.split_validation_only(seqs, fraction=0.0)


def test_leave_last_out_validation_fraction_trains_the_others_on_their_second_to_last_item(spark):
    seqs = sequences_df(spark, [(f"u{k}", [1, 2, 3, 4]) for k in range(400)])
    split = Q.split_leave_last_out(seqs, validation_fraction=0.25, seed=7).cache()
    validating = {r.user_id for r in split.where("val_target IS NOT NULL").collect()}
    assert validating == {r.user_id for r in Q.split_validation_only(seqs, fraction=0.25, seed=7)
                          .where("val_target IS NOT NULL").collect()}  # the same seeded sample
    expected = spark.createDataFrame(
        [(f"u{k}", [1, 2], [1, 2], 3, [1, 2, 3], 4) if f"u{k}" in validating else
         (f"u{k}", [1, 2, 3], None, None, [1, 2, 3], 4) for k in range(400)], Q.SPLIT_SCHEMA)
    assert_df_equality(split, expected, ignore_row_order=True, ignore_nullable=True)
    # Every user keeps the test item out of training; a fraction of 1 is plain leave-last-out.
    assert split.where(F.array_contains("train", 4)).count() == 0
    assert_df_equality(Q.split_leave_last_out(seqs, validation_fraction=1.0), Q.split_leave_last_out(seqs),
                       ignore_row_order=True, ignore_nullable=True)


def test_temporal_split_cuts_on_global_time(spark):
    day = lambda d, h=12: dt.datetime(2026, 11, d, h)  # noqa: E731
    seqs = spark.createDataFrame([
        ("u1", [1, 2, 3, 4, 5], [day(17), day(18), day(19), day(19, 13), day(20)], 5, "2026-11-20"),
        ("u2", [6, 7], [day(20), day(20, 13)], 2, "2026-11-20"),  # only test-period events: no query
        ("u3", [8, 9], [day(17), day(18)], 2, "2026-11-20"),  # only training events
    ], S.USER_SEQUENCES_SCHEMA)
    expected = spark.createDataFrame([
        ("u1", [1, 2], [1, 2], 3, [1, 2, 3, 4], 5),
        ("u2", [], None, None, None, None),
        ("u3", [8, 9], None, None, None, None)], Q.SPLIT_SCHEMA)
    got = Q.split_temporal(seqs, "2026-11-20", cutoff_days=1)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_unknown_split_is_an_error(spark):
    with pytest.raises(ValueError, match="unknown split 'random'"):
        Q.split_sequences(sequences_df(spark, [("u1", [1, 2, 3])]), "random", "2026-11-20", 1)


def test_eval_examples_pad_and_mask_history(spark):
    splits = spark.createDataFrame([("u1", [1, 2], [1, 2, 1], 3, [1, 2, 1, 3], 4)], Q.SPLIT_SCHEMA)
    got = Q.eval_examples(splits, "test", window_length=3)
    expected = spark.createDataFrame([("u1", [2, 1, 3], 4, [1, 2, 3])],
                                     "user_id string, input array<int>, target int, seen array<int>")
    assert_df_equality(got, expected, ignore_nullable=True)
    padded = Q.eval_examples(splits, "val", window_length=5).first()
    assert padded.input == [0, 0, 1, 2, 1]


# --- training windows and negatives ----------------------------------------------------------------

WINDOW_SCHEMA = "user_id string, window_end int, input array<int>, target array<int>"


def test_training_windows_cover_each_target_once(spark):
    splits = spark.createDataFrame([("u1", [1, 2, 3, 4, 5, 6], None, None, None, None),
                                    ("u2", [7], None, None, None, None)], Q.SPLIT_SCHEMA)
    got = Q.training_windows(splits, window_length=3, stride=2)
    expected = spark.createDataFrame([
        ("u1", 5, [3, 4, 5], [4, 5, 6]),
        ("u1", 3, [1, 2, 3], [2, 3, 0]),  # target 4 already in the later window: masked
        ("u1", 1, [0, 0, 1], [0, 0, 0]),  # target 2 also covered later
    ], WINDOW_SCHEMA)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    targets = [x for r in got.collect() for x in r.target if x]
    assert sorted(targets) == [2, 3, 4, 5, 6]  # every next-item target exactly once


def test_training_windows_reject_a_stride_longer_than_the_window(spark):
    splits = spark.createDataFrame([("u1", [1, 2, 3], None, None, None, None)], Q.SPLIT_SCHEMA)
    with pytest.raises(ValueError, match="stride"):
        Q.training_windows(splits, window_length=2, stride=3)


def test_no_held_out_event_ever_inside_a_training_example(spark):
    # Held-out items get ids that appear nowhere else, so any leak is visible.
    seqs = sequences_df(spark, [(f"u{k}", [1, 2, 3, 4, 5, 100 + k, 200 + k]) for k in range(20)])
    splits = Q.split_leave_last_out(seqs)
    windows = Q.training_windows(splits, window_length=4, stride=2).collect()
    seen_in_training = {x for r in windows for x in r.input + r.target}
    held_out = {r.val_target for r in splits.collect()} | {r.test_target for r in splits.collect()}
    assert seen_in_training.isdisjoint(held_out)
    # the twin: windows over the full sequences (no split) do contain them
    leaky = Q.training_windows(seqs.withColumnRenamed(S.ITEM_IDX, "train"), 4, 2).collect()
    assert {x for r in leaky for x in r.target} & held_out


def test_transition_counts_are_the_training_windows_pairs(spark):
    splits = spark.createDataFrame([("u1", [1, 2, 3, 1, 2], None, None, None, None),
                                    ("u2", [2, 3], None, None, None, None),
                                    ("u3", [4], None, None, None, None)], Q.SPLIT_SCHEMA)
    got = Q.transition_counts(splits)
    expected = spark.createDataFrame([(1, 2, 2), (2, 3, 2), (3, 1, 1)],
                                     f"{S.PREV_IDX} int, {S.NEXT_IDX} int, {S.COUNT} long")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    # the same pairs, counted, as the (input, target) positions of the training windows
    windows = Q.training_windows(splits, window_length=3, stride=2).collect()
    pairs = sorted((a, b) for r in windows for a, b in zip(r.input, r.target) if b)
    assert pairs == sorted(p for r in got.collect() for p in [(r.prev_idx, r.next_idx)] * r[S.COUNT])


def test_transition_counts_never_see_held_out_items(spark):
    seqs = sequences_df(spark, [(f"u{k}", [1, 2, 3, 100 + k, 200 + k]) for k in range(5)])
    got = Q.transition_counts(Q.split_leave_last_out(seqs)).collect()
    assert max(max(r.prev_idx, r.next_idx) for r in got) == 3
    # the twin: counted over the full sequences, the held-out items are in
    leaky = Q.transition_counts(seqs.withColumnRenamed(S.ITEM_IDX, "train")).collect()
    assert max(r.next_idx for r in leaky) >= 200


def test_negative_cdf_follows_popularity_power():
    counts = pd.DataFrame({S.ITEM_IDX: [1, 2, 3], S.COUNT: [1, 4, 0]})
    cdf = Q.negative_cdf(counts, num_items=5, alpha=0.5)
    np.testing.assert_allclose(np.diff(np.concatenate([[0], cdf])), [0, 1 / 3, 2 / 3, 0, 0])
    uniform = Q.negative_cdf(counts, num_items=5, alpha=0.0)
    np.testing.assert_allclose(np.diff(np.concatenate([[0], uniform])), [0, 0.5, 0.5, 0, 0])


def _windows(spark, n_users=40):
    rows = [(f"u{k}", 3, [0, k % 7 + 1, k % 5 + 1], [k % 7 + 1, k % 5 + 1, k % 3 + 1]) for k in range(n_users)]
    return spark.createDataFrame(rows, WINDOW_SCHEMA)


def test_negatives_exclude_positives_and_follow_the_seed(spark):
    cdf = Q.negative_cdf(pd.DataFrame({S.ITEM_IDX: list(range(1, 13)), S.COUNT: [50] * 3 + [1] * 9}), 13, 1.0)
    got = Q.add_negatives(_windows(spark), cdf, num_negatives=8, seed=3, window_length=3).collect()
    for row in got:
        assert len(row.negatives) == 8
        assert not set(row.negatives) & set(row.target) and 0 not in row.negatives
    again = Q.add_negatives(_windows(spark).repartition(7), cdf, 8, 3, 3).collect()
    one = Q.add_negatives(_windows(spark).coalesce(1), cdf, 8, 3, 3).collect()
    by_user = lambda rows: {r.user_id: r.negatives for r in rows}  # noqa: E731
    assert by_user(got) == by_user(again) == by_user(one)
    other_seed = Q.add_negatives(_windows(spark), cdf, 8, 4, 3).collect()
    assert by_user(other_seed) != by_user(got)


def test_negatives_refuse_a_catalogue_smaller_than_a_window(spark):
    cdf = Q.negative_cdf(pd.DataFrame({S.ITEM_IDX: [1, 2, 3], S.COUNT: [1, 1, 1]}), 4, 1.0)
    with pytest.raises(Q.DataQualityError, match="catalogue is too small"):
        Q.add_negatives(_windows(spark), cdf, 8, 3, window_length=3)
