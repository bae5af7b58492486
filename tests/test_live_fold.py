"""The live refresh's pure steps on small inline data (whole-DataFrame comparisons, each with a twin on
bad data), and its idempotent file append on the session's metastore."""
import datetime as dt

import pytest
from chispa import assert_df_equality
from chispa.dataframe_comparer import DataFramesNotEqualError

from recsys_spark import schemas as S
from pyspark.sql import functions as F

from recsys_spark.live import (BATCH, CORRUPT, EVENTS, EVENTS_FOLDED, EVENTS_TYPE, MALFORMED, append_files,
                               fold_events, newest_rows, raw_event_schema, validate_stream_rows)
from recsys_spark.tables import ensure_table
from recsys_spark.user_state import LAST_TS

T0 = dt.datetime(2026, 11, 27, 10, 0, 0)
PRIOR = f"{S.USER_ID} string, {S.ITEM_IDX} array<int>, {LAST_TS} timestamp, {EVENTS} {EVENTS_TYPE.simpleString()}"
NEW = f"{S.USER_ID} string, {S.ITEM_ID} string, {S.EVENT_TYPE} string, {S.TS} timestamp, {S.SESSION_ID} string, {S.ITEM_IDX} int"
STATE = (f"{S.USER_ID} string, {S.ITEM_IDX} array<int>, {EVENTS} {EVENTS_TYPE.simpleString()}, "
         f"{EVENTS_FOLDED} int, {LAST_TS} timestamp")


def t(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def e(minutes: float, item: str, idx, event_type: str = "view") -> tuple:
    return (t(minutes), item, event_type, None, idx)


def fold_case(spark):
    prior = spark.createDataFrame([
        ("a", [1, 2, 3], t(-600), None),            # the night's state only
        ("b", [7], t(-600), [e(5, "i9", 9)]),        # one event folded live already
        ("c", None, None, None),                     # never seen: starts empty
    ], PRIOR)
    new = spark.createDataFrame([
        ("a", "i5", "view", t(3), None, 5),
        ("a", "i4", "view", t(1), None, 4),     # arrived later, happened earlier: folded first
        ("a", "i3", "view", t(0), None, 3),     # repeats the history's last item: collapsed
        ("a", "zz", "view", t(2), None, None),  # not in the night's vocabulary: kept, not scored
        ("a", "i5", "view", t(3), None, 5),     # an exact duplicate: once
        ("b", "i8", "cart", t(4), None, 8),     # tie on ts: item_id then event_type decide; and both
        ("b", "i6", "view", t(4), None, 6),     # land before the event folded in an earlier batch
        ("c", "i2", "view", t(1), None, 2),
        ("c", "i2", "cart", t(2), None, 2),
    ], NEW)
    return prior, new


def test_fold_orders_by_event_time_across_batches_collapses_caps_and_counts(spark):
    prior, new = fold_case(spark)
    expected = spark.createDataFrame([
        ("a", [2, 3, 4, 5], [e(0, "i3", 3), e(1, "i4", 4), e(2, "zz", None), e(3, "i5", 5)], 4, t(3)),
        ("b", [7, 6, 8, 9], [e(4, "i6", 6), e(4, "i8", 8, "cart"), e(5, "i9", 9)], 3, t(5)),
        ("c", [2], [e(1, "i2", 2), e(2, "i2", 2, "cart")], 2, t(2)),
    ], STATE)
    assert_df_equality(fold_events(prior, new, max_history=4, collapse_repeats=True), expected,
                       ignore_row_order=True, ignore_nullable=True)


def test_fold_twin_arrival_order_is_not_event_time_order(spark):
    prior, new = fold_case(spark)
    arrival_order = fold_events(prior, new, 4, True).withColumn(
        S.ITEM_IDX, F.when(F.col(S.USER_ID) == "b", F.array(*map(F.lit, [7, 9, 8, 6]))).otherwise(F.col(S.ITEM_IDX)))
    with pytest.raises(DataFramesNotEqualError):
        assert_df_equality(fold_events(prior, new, 4, True), arrival_order, ignore_row_order=True,
                           ignore_nullable=True)


def test_fold_without_collapse_keeps_repeats(spark):
    prior, new = fold_case(spark)
    folded = {r[S.USER_ID]: r[S.ITEM_IDX] for r in fold_events(prior, new, 10, collapse_repeats=False).collect()}
    assert folded == {"a": [1, 2, 3, 3, 4, 5], "b": [7, 6, 8, 9], "c": [2, 2]}


def test_stream_validation_quarantines_bad_rows_and_lines_that_are_no_json(spark):
    raw = spark.createDataFrame([
        ("u1", "i1", "view", "2026-11-27T10:00:00Z", None, None),
        ("u1", "i1", "teleport", "2026-11-27T10:00:00Z", None, None),
        ("u1", "i1", "view", "2099-01-01T00:00:00Z", None, None),
        (None, None, None, None, None, "{not json"),
    ], raw_event_schema("json"))
    valid, rejected = validate_stream_rows(raw, "2026-12-02", list(S.EVENT_TYPES))
    assert_df_equality(valid, spark.createDataFrame([("u1", "i1", "view", dt.datetime(2026, 11, 27, 10), None)],
                                                    S.EVENTS_SCHEMA), ignore_nullable=True)
    reasons = sorted((r[S.REASON], r[S.RAW] if r[S.REASON] == MALFORMED else None) for r in rejected.collect())
    assert reasons == [("future_timestamp", None), (MALFORMED, "{not json"), ("unknown_event_type", None)]
    assert CORRUPT not in valid.columns


def test_stream_validation_twin_a_good_row_is_not_rejected(spark):
    raw = spark.createDataFrame([("u1", "i1", "view", "2026-11-27T10:00:00Z", None, None)], raw_event_schema("json"))
    _, rejected = validate_stream_rows(raw, "2026-12-02", list(S.EVENT_TYPES))
    assert rejected.count() == 0


def test_newest_rows_keeps_the_highest_batch_per_user(spark):
    rows = spark.createDataFrame([("a", 1, "old"), ("a", 3, "new"), ("b", 2, "only")],
                                 f"{S.USER_ID} string, {BATCH} long, v string")
    assert_df_equality(newest_rows(rows), spark.createDataFrame([("a", 3, "new"), ("b", 2, "only")], rows.schema),
                       ignore_row_order=True)
    with pytest.raises(DataFramesNotEqualError):
        assert_df_equality(newest_rows(rows), spark.createDataFrame([("a", 1, "old"), ("b", 2, "only")], rows.schema),
                           ignore_row_order=True)


def test_append_files_under_one_name_is_idempotent_and_another_name_adds(spark):
    table = "recsys.live_append_check"
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    ensure_table(spark, table, S.EVENTS_TABLE_SCHEMA)
    rows = spark.createDataFrame([("u1", "i1", "view", t(0), None, "2026-11-27"),
                                  ("u2", "i2", "view", t(1), None, "2026-11-28")], S.EVENTS_TABLE_SCHEMA)
    written = append_files(spark, table, rows, (S.DS,), "stream-b000000000001")
    append_files(spark, table, rows, (S.DS,), "stream-b000000000001")  # a replay of the same micro-batch
    assert sorted(p[S.DS] for p in written) == ["2026-11-27", "2026-11-28"]
    spark.catalog.refreshTable(table)
    assert spark.table(table).count() == 2
    append_files(spark, table, rows, (S.DS,), "stream-b000000000002")  # twin: another micro-batch adds
    spark.catalog.refreshTable(table)
    assert spark.table(table).count() == 4
    spark.sql(f"DROP TABLE {table}")
