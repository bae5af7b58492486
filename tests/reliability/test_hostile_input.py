"""Hostile input: every fuzzed event row is either accepted as a contract-valid event or quarantined
with a reason (count in = accepted + rejected, no valid row lost); broken inputs as a whole (missing
columns, a corrupt Parquet file) fail the night with a clear error."""
import copy
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from recsys_spark import importers
from recsys_spark import schemas as S
from recsys_spark import sequences as Q
from recsys_spark.build import build_night
from recsys_spark.events import events_table, write_events

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

DS = "2026-11-20"
FUZZ = settings(max_examples=8, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
REASONS = {Q.MISSING_USER, Q.MISSING_ITEM, Q.MISSING_EVENT_TYPE, Q.UNKNOWN_EVENT_TYPE, Q.BAD_TIMESTAMP,
           Q.FUTURE_TIMESTAMP, Q.PRE_EPOCH_TIMESTAMP}

hostile_text = st.one_of(
    st.none(), st.just(""), st.just("   "), st.just("\x00"), st.just("a\x00b"), st.just("x" * 20_000),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30))
hostile_ts = st.one_of(
    hostile_text, st.sampled_from(["1969-12-31 23:59:59", "1900-01-01", "0001-01-01", "9999-12-31 23:59:59",
                                   "2026-11-21 00:00:00", "-1", "1700000000", "2026-13-45", "NaN"]))
valid_ts = st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2026, 11, 20, 23, 59, 59)).map(str)
valid_row = st.tuples(st.integers(0, 10**6).map(lambda n: f"valid-{n}"), st.sampled_from(["i1", " i2 ", "ü"]),
                      st.sampled_from(S.EVENT_TYPES + ("VIEW ",)), valid_ts)
hostile_row = st.tuples(hostile_text, hostile_text, st.one_of(hostile_text, st.sampled_from(S.EVENT_TYPES)),
                        hostile_ts)


@FUZZ
@given(valid=st.lists(valid_row, max_size=8), hostile=st.lists(hostile_row, min_size=1, max_size=12),
       extra=st.booleans())
@example(valid=[], hostile=[("u", "i", "view", "1969-12-31 23:59:59"), ("u", "i", "view", "2026-11-21 00:00:00"),
                            ("u", "i", "view", "0001-01-01")], extra=False)
def test_fuzzed_event_rows_are_accepted_or_quarantined_never_lost(spark, valid, hostile, extra):
    """Nulls, blanks, NUL bytes, huge and unicode strings, unparsable, pre-1970 and future
    timestamps, extra columns: count in = accepted + rejected, each rejection has a known reason,
    every accepted row meets the contract and no valid row is dropped."""
    rows = [(*r, "junk") if extra else r for r in valid + hostile]
    schema = "user_id string, item_id string, event_type string, ts string" + (", extra string" if extra else "")
    accepted, rejected = Q.validate_events(spark.createDataFrame(rows, schema), DS, list(S.EVENT_TYPES))
    accepted, rejected = accepted.collect(), rejected.collect()
    assert len(accepted) + len(rejected) == len(rows)
    assert {r[S.REASON] for r in rejected} <= REASONS and all(r[S.RAW] for r in rejected)
    for row in accepted:
        assert row.user_id.strip(" ") and row.item_id.strip(" ") and row.event_type in S.EVENT_TYPES
        assert dt.datetime(1970, 1, 1) <= row.ts < Q.day_end(DS).replace(tzinfo=None)
    assert {v[0] for v in valid} <= {r.user_id for r in accepted}


def test_wrong_column_types_are_quarantined_not_crashing(spark):
    """Numeric ids, an epoch-number ts and a boolean event_type are read as text: the ids are
    accepted, the rows with a non-timestamp ts or unknown type are rejected with reasons."""
    frame = spark.createDataFrame([(1, 2, True, 1_700_000_000), (3, 4, False, -5)],
                                  "user_id long, item_id int, event_type boolean, ts long")
    accepted, rejected = Q.validate_events(frame, DS, list(S.EVENT_TYPES))
    assert accepted.count() == 0
    assert sorted(r[S.REASON] for r in rejected.collect()) == [Q.UNKNOWN_EVENT_TYPE] * 2


def test_missing_required_columns_fail_with_a_clear_message(spark):
    """Input without item_id or ts is refused as a whole, naming the missing columns."""
    frame = spark.createDataFrame([("u", "view")], "user_id string, event_type string")
    with pytest.raises(Q.DataQualityError, match="lack required column.s. item_id, ts"):
        Q.validate_events(frame, DS, list(S.EVENT_TYPES))


line = st.one_of(
    st.builds(lambda u, i, t: f"{u}\t{i}\t5\t{t}", st.integers(0, 999), st.integers(0, 999),
              st.integers(0, 4_000_000_000)),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40),
    st.sampled_from(["u\ti\t5\t" + "9" * 30, "u\ti\t5\t-1", "\x00\t\x00\t\x00\t\x00", "u\ti\t5\t1e9",
                     "u\t\t5\t100", "x" * 50_000]))


@FUZZ
@given(lines=st.lists(line, min_size=1, max_size=15))
def test_fuzzed_import_lines_are_accepted_or_quarantined(spark, tmp_path_factory, lines):
    """Every non-blank line of a MovieLens file becomes one event or one quarantined row (no crash
    on overflowing epochs, NUL bytes or huge lines), alongside an empty file in the same input."""
    directory = tmp_path_factory.mktemp("import")
    (directory / "part-0.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "part-1.tsv").write_text("")
    events, rejected = importers.read_events(spark, str(directory), "movielens", DS)
    events, rejected = events.collect(), rejected.collect()
    assert len(events) + len(rejected) == sum(1 for x in lines if x.strip(" "))
    assert all(dt.datetime(1970, 1, 1) <= e.ts and e.ds == e.ts.strftime("%Y-%m-%d") for e in events)
    good = [x for x in lines if x.count("\t") == 3 and x.split("\t")[3].isdigit() and int(x.split("\t")[3]) < 4e9
            and x.split("\t")[0].strip(" ") and x.split("\t")[1].strip(" ")]
    assert len(events) >= len(good)


@pytest.fixture
def hostile_cfg(cfg, tmp_path):
    out = copy.deepcopy(cfg)
    out.storage.database = "reliability_hostile"
    out.storage.root = str(tmp_path)
    out.sequences.lookback_days = 1
    return out


def test_corrupt_parquet_input_fails_the_night_with_a_clear_error(spark, hostile_cfg):
    """A corrupt Parquet file in the night's events partition stops build with a DataQualityError
    naming the table, instead of a Spark stack trace or silently skipped rows."""
    db = hostile_cfg.storage.database
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    noon = dt.datetime(2026, 11, 20, 12)
    rows = [(f"u{u}", f"i{i}", "view", noon + dt.timedelta(minutes=i), None, DS) for u in range(10) for i in range(8)]
    write_events(spark, db, spark.createDataFrame(rows, S.EVENTS_TABLE_SCHEMA).repartition(3), [DS])
    location = spark.sql(f"DESCRIBE TABLE EXTENDED {events_table(db)} PARTITION (ds='{DS}')") \
        .where(F.col("col_name") == "Location").first().data_type
    victim = sorted(Path(location.removeprefix("file:")).glob("part-*"))[0]
    victim.write_bytes(b"PAR1 this is not a parquet file")
    spark.catalog.refreshTable(events_table(db))
    with pytest.raises(Q.DataQualityError, match="cannot read the input events of .* corrupt or not Parquet"):
        build_night(spark, hostile_cfg, DS)
