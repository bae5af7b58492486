"""Synthetic generator and public-format importers."""
import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark import importers as I
from recsys_spark import schemas as S
from recsys_spark.config import SyntheticConfig
from recsys_spark.errors import UserError
from recsys_spark.synthetic import catalogue_size, generate_events

DAY = dt.date(2026, 11, 20)
SMALL = SyntheticConfig(events_per_day=3000, n_users=300, n_items=200, new_items_per_day=5,
                        new_users_per_day=10, partitions=2)


def test_generator_is_deterministic_and_independent_of_partitioning(spark):
    a = generate_events(spark, SMALL, DAY, DAY)
    b = generate_events(spark, SyntheticConfig(**{**SMALL.__dict__, "partitions": 7}), DAY, DAY)
    assert_df_equality(a, b, ignore_row_order=True)
    other = generate_events(spark, SyntheticConfig(**{**SMALL.__dict__, "seed": 8}), DAY, DAY)
    assert a.exceptAll(other).count() > 0


def test_generating_a_range_equals_generating_each_day(spark):
    both = generate_events(spark, SMALL, DAY, DAY + dt.timedelta(days=1))
    second = generate_events(spark, SMALL, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=1))
    assert_df_equality(both.where(F.col(S.DS) == "2026-11-21"), second, ignore_row_order=True)


def test_generator_schema_and_distributions(spark):
    df = generate_events(spark, SMALL, DAY - dt.timedelta(days=2), DAY).cache()
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == [
        (f.name, f.dataType.simpleString()) for f in S.EVENTS_TABLE_SCHEMA.fields]
    n = df.count()
    assert 0.8 * 9000 <= n <= 1.2 * 9000  # events_per_day x 3 days, roughly
    types = {r.event_type: r["count"] for r in df.groupBy(S.EVENT_TYPE).count().collect()}
    assert types["view"] > types["cart"] > types["purchase"] > 0
    # every event falls on its ds (sessions never cross midnight) and there are three nights
    assert df.where(F.date_format(S.TS, "yyyy-MM-dd") != F.col(S.DS)).count() == 0
    assert df.select(S.DS).distinct().count() == 3
    # Zipf-like popularity: the top 1% of items take far more than 1% of the events
    counts = sorted((r["count"] for r in df.groupBy(S.ITEM_ID).count().collect()), reverse=True)
    top = max(1, len(counts) // 100)
    assert sum(counts[:top]) / n > 0.05
    # heavy-tailed users: the most active user has many times the median activity
    users = sorted(r["count"] for r in df.groupBy(S.USER_ID).count().collect())
    assert users[-1] > 5 * users[len(users) // 2]
    # planted transitions: a large share of consecutive pairs repeat (far above chance)
    pairs = (df.select(S.SESSION_ID, S.TS, S.ITEM_ID)
             .withColumn("prev", F.lag(S.ITEM_ID).over(
                 __import__("pyspark.sql").sql.Window.partitionBy(S.SESSION_ID).orderBy(S.TS)))
             .where(F.col("prev").isNotNull()).groupBy("prev", S.ITEM_ID).count())
    repeated = pairs.where(F.col("count") >= 3).agg(F.sum("count")).first()[0]
    assert repeated / pairs.agg(F.sum("count")).first()[0] > 0.3
    df.unpersist()


def test_catalogue_grows_after_the_epoch():
    assert catalogue_size(SMALL, dt.date(2026, 11, 1)) == 200
    assert catalogue_size(SMALL, dt.date(2026, 11, 3)) == 210
    assert catalogue_size(SMALL, dt.date(2026, 10, 1)) == 200


def test_generator_rejects_an_empty_range(spark):
    with pytest.raises(ValueError, match="empty"):
        generate_events(spark, SMALL, DAY, DAY - dt.timedelta(days=1))


# --- importers -------------------------------------------------------------------------------------

EVENTS_OUT = "user_id string, item_id string, event_type string, ts timestamp, session_id string, ds string"


def _read(spark, tmp_path, fmt, text):
    path = tmp_path / f"{fmt}.txt"
    path.write_text(text)
    return I.read_events(spark, str(path), fmt, rejected_ds="2026-11-20")


def test_movielens_u_data(spark, tmp_path):
    events, rejected = _read(spark, tmp_path, "movielens", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                                                          "bad line\n22\t\t1\t878887116\n5\t6\t1\tnot-a-time\n")
    expected = spark.createDataFrame([
        ("196", "242", "view", dt.datetime(1997, 12, 4, 15, 55, 49), None, "1997-12-04"),
        ("186", "302", "view", dt.datetime(1998, 4, 4, 19, 22, 22), None, "1998-04-04")], EVENTS_OUT)
    assert_df_equality(events, expected, ignore_row_order=True, ignore_nullable=True)
    assert sorted((r.raw, r.reason) for r in rejected.collect()) == sorted([
        ("bad line", I.MALFORMED), ("22\t\t1\t878887116", I.MISSING_ITEM),
        ("5\t6\t1\tnot-a-time", I.BAD_TIMESTAMP)])


def test_movielens_ratings_dat(spark, tmp_path):
    events, rejected = _read(spark, tmp_path, "movielens-dat", "1::1193::5::978300760\n1::661\n")
    assert [(r.user_id, r.item_id) for r in events.collect()] == [("1", "1193")]
    assert [r.reason for r in rejected.collect()] == [I.MALFORMED]


def test_gru4rec_tsv(spark, tmp_path):
    events, rejected = _read(spark, tmp_path, "gru4rec",
                             "SessionId\tItemId\tTime\n1\t214536502\t1396839069.277\n1\t214536500\t1396839249.868\n"
                             "2\t\t1396839249\n")
    expected = spark.createDataFrame([
        ("1", "214536502", "click", dt.datetime(2014, 4, 7, 2, 51, 9, 277000), "1", "2014-04-07"),
        ("1", "214536500", "click", dt.datetime(2014, 4, 7, 2, 54, 9, 868000), "1", "2014-04-07")], EVENTS_OUT)
    assert_df_equality(events, expected, ignore_row_order=True, ignore_nullable=True)
    assert [r.reason for r in rejected.collect()] == [I.MISSING_ITEM]


def test_sequence_file_synthesizes_monotone_timestamps(spark, tmp_path):
    events, rejected = _read(spark, tmp_path, "sequences", "u1 10 11 12\nu2 7\nlonely\n")
    got = sorted((r.user_id, r.item_id, r.ts) for r in events.collect())
    base = dt.datetime(2000, 1, 1)
    assert got == [("u1", "10", base), ("u1", "11", base + dt.timedelta(seconds=1)),
                   ("u1", "12", base + dt.timedelta(seconds=2)), ("u2", "7", base)]
    assert [(r.raw, r.reason) for r in rejected.collect()] == [("lonely", I.MALFORMED)]


def test_retailrocket_events(spark, tmp_path):
    events, rejected = _read(spark, tmp_path, "retailrocket",
                             "timestamp,visitorid,event,itemid,transactionid\n"
                             "1433221332117,257597,view,355908,\n1433224214164,992329,addtocart,248676,\n"
                             "1433221999827,111016,transaction,318965,4000\nxx,1,view,2,\n")
    assert sorted((r.user_id, r.item_id, r.event_type) for r in events.collect()) == [
        ("111016", "318965", "purchase"), ("257597", "355908", "view"), ("992329", "248676", "cart")]
    assert [r.reason for r in rejected.collect()] == [I.BAD_TIMESTAMP]


def test_pairs_file_orders_each_users_lines(spark, tmp_path):
    events, rejected = _read(spark, tmp_path, "pairs", "1 10\n2 7\n1 11\n1 12\nbad\n2 8 9\n")
    base = dt.datetime(2000, 1, 1)
    expected = spark.createDataFrame([
        ("1", "10", "view", base, None, "2000-01-01"),
        ("1", "11", "view", base + dt.timedelta(seconds=1), None, "2000-01-01"),
        ("1", "12", "view", base + dt.timedelta(seconds=2), None, "2000-01-01"),
        ("2", "7", "view", base, None, "2000-01-01")], EVENTS_OUT)
    assert_df_equality(events, expected, ignore_row_order=True, ignore_nullable=True)
    assert sorted((r.raw, r.reason) for r in rejected.collect()) == [("2 8 9", I.MALFORMED), ("bad", I.MALFORMED)]


def test_csv_with_named_columns_and_a_datetime_pattern(spark, tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text("sku,visitor,when,kind,extra\n"
                    "A1,u1,2026-11-20 10:00:00,View,x\n"
                    "A2,u1,2026-11-20 10:05:00,cart,y\n"
                    "A3,u2,yesterday,view,z\n"
                    ",u2,2026-11-20 11:00:00,view,w\n")
    columns = I.ColumnMap.parse("user=visitor,item=sku,time=when,event=kind", "yyyy-MM-dd HH:mm:ss")
    events, rejected = I.read_events(spark, str(path), "csv", "2026-11-20", columns)
    expected = spark.createDataFrame([
        ("u1", "A1", "view", dt.datetime(2026, 11, 20, 10, 0), None, "2026-11-20"),
        ("u1", "A2", "cart", dt.datetime(2026, 11, 20, 10, 5), None, "2026-11-20")], EVENTS_OUT)
    assert_df_equality(events, expected, ignore_row_order=True, ignore_nullable=True)
    assert sorted((r.raw, r.reason) for r in rejected.collect()) == [
        ('{"sku":"A3","visitor":"u2","when":"yesterday","kind":"view","extra":"z"}', I.BAD_TIMESTAMP),
        ('{"visitor":"u2","when":"2026-11-20 11:00:00","kind":"view","extra":"w"}', I.MISSING_ITEM)]


def test_parquet_with_named_typed_columns_in_epoch_milliseconds(spark, tmp_path):
    spark.createDataFrame([(7, 100, 1433221332117, "s1"), (8, 101, -5, "s2")],
                          "visitorid long, itemid int, timestamp long, sid string") \
        .coalesce(1).write.parquet(str(tmp_path / "events.parquet"))
    columns = I.ColumnMap.parse("user=visitorid,item=itemid,time=timestamp,session=sid", "epoch_ms")
    events, rejected = I.read_events(spark, str(tmp_path / "events.parquet"), "parquet", "2015-06-02", columns)
    expected = spark.createDataFrame([
        ("7", "100", "view", dt.datetime(2015, 6, 2, 5, 2, 12, 117000), "s1", "2015-06-02")], EVENTS_OUT)
    assert_df_equality(events, expected, ignore_nullable=True)
    assert [r.reason for r in rejected.collect()] == [I.BAD_TIMESTAMP]


def test_twin_named_columns_that_are_not_there_are_a_clear_error(spark, tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text("sku,visitor,when\nA1,u1,1\n")
    with pytest.raises(UserError, match=r"input has no column\(s\) user_id \(it has sku, visitor, when\)"):
        I.read_events(spark, str(path), "csv", "2026-11-20", I.ColumnMap.parse("user=user_id,item=sku,time=when"))
    with pytest.raises(UserError, match="--columns must name the time column"):
        I.ColumnMap.parse("user=visitor,item=sku")
    with pytest.raises(UserError, match="format csv needs --columns"):
        I.read_events(spark, str(path), "csv", "2026-11-20")


def test_unknown_format_is_a_clear_error(spark, tmp_path):
    with pytest.raises(UserError, match="unknown input format 'xml'; known formats: csv, gru4rec"):
        _read(spark, tmp_path, "xml", "a,b\n")
