"""Query construction of the three protocols, compared as whole DataFrames on hand-made sequences."""
import datetime as dt

import numpy as np
import pytest
from chispa import assert_df_equality

from recsys_spark import evaluation as E
from recsys_spark.config import load_config
from recsys_spark.datasets import DatasetMetadata

T0 = dt.datetime(2026, 11, 1)
SEQ_SCHEMA = "user_id string, item_idx array<int>, ts array<timestamp>"
QUERY_SCHEMA = "key string, input array<int>, target int, seen array<int>"


def day(d: float) -> dt.datetime:
    return T0 + dt.timedelta(days=d)


def sequences(spark, rows):
    return spark.createDataFrame([(u, items, [day(d) for d in days]) for u, items, days in rows], SEQ_SCHEMA)


def check(actual, expected):
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_leave_last_out_holds_out_the_last_and_second_last_event(spark):
    seqs = sequences(spark, [("u1", [1, 2, 3, 4], [0, 1, 2, 3]),
                             ("u2", [5, 6], [0, 1]),  # too short: fitted in full, never queried
                             ("u3", [7, 8, 7], [0, 1, 2])])  # the repeat stays a legitimate target
    fit, queries = E.leave_last_out(seqs, E.TEST)
    check(fit, sequences(spark, [("u1", [1, 2, 3], [0, 1, 2]), ("u2", [5, 6], [0, 1]),
                                ("u3", [7, 8], [0, 1])]))
    check(queries, spark.createDataFrame([("u1", [1, 2, 3], 4, [1, 2, 3]), ("u3", [7, 8], 7, [7, 8])],
                                         QUERY_SCHEMA))
    fit, queries = E.leave_last_out(seqs, E.VALIDATION)
    check(fit, sequences(spark, [("u1", [1, 2], [0, 1]), ("u2", [5, 6], [0, 1]), ("u3", [7], [0])]))
    check(queries, spark.createDataFrame([("u1", [1, 2], 3, [1, 2]), ("u3", [7], 8, [7])], QUERY_SCHEMA))


def test_temporal_split_queries_every_event_after_the_cutoff(spark):
    seqs = sequences(spark, [("u1", [1, 2, 3, 1], [1, 2, 11, 12]),
                             ("u2", [4, 5], [11, 12]),  # new after the cut-off: its first event has no history
                             ("u3", [2, 6], [3, 4])])  # nothing after the cut-off: fit only
    fit, queries = E.temporal_split(seqs, day(10))
    check(fit, sequences(spark, [("u1", [1, 2], [1, 2]), ("u3", [2, 6], [3, 4])]))
    check(queries, spark.createDataFrame([
        ("u1", [1, 2], 3, [1, 2]),
        ("u1", [1, 2, 3], 1, [1, 2, 3]),  # earlier test events are part of the input, as in serving
        ("u2", [4], 5, [4]),
    ], QUERY_SCHEMA))
    _, window = E.temporal_split(seqs, day(10), until=day(12))
    check(window, spark.createDataFrame([("u1", [1, 2], 3, [1, 2])], QUERY_SCHEMA))


def test_session_protocol_queries_each_next_click_without_masking(spark):
    sessions = sequences(spark, [("s1", [1, 2, 2], [0, 0.1, 0.2]), ("s2", [3], [0])])
    check(E.session_queries(sessions), spark.createDataFrame([
        ("s1", [1], 2, []), ("s1", [1, 2], 2, []),
    ], QUERY_SCHEMA))


def test_collect_queries_left_pads_and_truncates(spark):
    df = spark.createDataFrame([("b", [0, 0, 4, 5], 6, [4, 5]), ("a", [1, 2, 3], 4, [1, 2, 3]),
                                ("c", [7], 8, [])], QUERY_SCHEMA)
    q = E.collect_queries(df, length=2)
    assert q.key.tolist() == ["a", "b", "c"]
    assert q.inputs.tolist() == [[2, 3], [4, 5], [0, 7]]
    assert q.targets.tolist() == [4, 6, 8]
    assert q.seen.tolist() == [[1, 2, 3], [4, 5, 0], [0, 0, 0]]
    sample = E.sample_queries(q, 2, seed=1)
    assert len(sample) == 2 and E.sample_queries(q, 2, seed=1).key.tolist() == sample.key.tolist()
    assert E.sample_queries(q, 0, seed=1) is q and np.array_equal(q.take(np.array([2])).targets, [8])


def test_leave_last_out_refuses_a_night_built_with_validation_only(spark):
    """Its last items chose the model's epoch: a leave-last-out test on them would be biased."""
    seqs = sequences(spark, [("u1", [1, 2, 3, 4], [0, 1, 2, 3])])
    meta = lambda split: DatasetMetadata(ds="2026-11-04", num_items=5, window_length=4,  # noqa: E731
                                         num_negatives=1, negative_alpha=0.75, split=split,
                                         item_index_version="2026-11-04", num_training_examples=1,
                                         num_training_positions=2, num_validation=1, num_test=0, row_groups=1)
    cfg = load_config("local")
    with pytest.raises(ValueError, match="split=validation_only"):
        E._protocol_data(spark, cfg, seqs, E.LEAVE_LAST_OUT, E.TEST, "2026-11-04", meta("validation_only"))
    # Twin: a temporal night is evaluated leave-last-out from its sequences.
    _, queries = E._protocol_data(spark, cfg, seqs, E.LEAVE_LAST_OUT, E.TEST, "2026-11-04", meta("temporal"))
    check(queries, spark.createDataFrame([("u1", [1, 2, 3], 4, [1, 2, 3])], QUERY_SCHEMA))
