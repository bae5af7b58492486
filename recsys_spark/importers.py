"""Readers that turn public dataset formats into the ``events`` contract.

Each reader returns ``(events, rejected)``: ``events`` has the ``events`` schema plus ``ds`` (the UTC
date of ``ts``); ``rejected`` has the raw line (or, for tables, the row as JSON) and a reason, so no
input row disappears silently. Line formats parse text lines in Spark; the table formats (``csv``
with a header, ``parquet``) read named columns (:class:`ColumnMap`), every value read as a string
so a bad one is quarantined instead of failing a cast.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.errors import NotFoundError, UserError

log = logging.getLogger(__name__)

MALFORMED = "malformed_row"
MISSING_USER = "missing_user_id"
MISSING_ITEM = "missing_item_id"
BAD_TIMESTAMP = "unparsable_timestamp"
OUT_OF_RANGE_TIMESTAMP = "timestamp_out_of_range"

TS_RANGE = (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc))
"""Accepted event times: from the epoch to the last instant a four-digit ``ds`` can name."""

SEQUENCE_FILE_BASE_TS = "2000-01-01 00:00:00"
"""Sequence files carry order only: event k of a line gets this timestamp + k seconds."""

RETAILROCKET_EVENTS = {"view": "view", "addtocart": "cart", "transaction": "purchase"}

_PARSED = "_parsed_ok"
_TS_RAW = "_ts_raw"


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def _finish(lines: DataFrame, parsed_ok: Column, user: Column, item: Column, event_type: Column,
            ts: Column, session: Column, rejected_ds: str) -> tuple[DataFrame, DataFrame]:
    """Attach a rejection reason to each parsed line and split accepted from rejected rows."""
    staged = lines.select(
        F.col("value").alias(S.RAW), parsed_ok.alias(_PARSED),
        F.trim(user).alias(S.USER_ID), F.trim(item).alias(S.ITEM_ID),
        event_type.alias(S.EVENT_TYPE), ts.alias(S.TS), session.alias(S.SESSION_ID))
    reason = (F.when(~F.col(_PARSED), F.lit(MALFORMED))
              .when(_blank(F.col(S.USER_ID)), F.lit(MISSING_USER))
              .when(_blank(F.col(S.ITEM_ID)), F.lit(MISSING_ITEM))
              .when(F.col(S.TS).isNull(), F.lit(BAD_TIMESTAMP))
              .when(~F.col(S.TS).between(*TS_RANGE), F.lit(OUT_OF_RANGE_TIMESTAMP)))
    staged = staged.withColumn(S.REASON, reason)
    events = (staged.where(F.col(S.REASON).isNull())
              .select(S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.TS, S.SESSION_ID)
              .withColumn(S.DS, F.date_format(S.TS, "yyyy-MM-dd")))
    rejected = (staged.where(F.col(S.REASON).isNotNull())
                .select(S.RAW, S.REASON, F.lit(rejected_ds).alias(S.DS)))
    return events, rejected


def _epoch_seconds(raw: Column) -> Column:
    """Epoch seconds (integer or fractional) as a timestamp; anything else (also a number too large
    for a timestamp) becomes null."""
    number = F.when(raw.rlike(r"^\s*\d+(\.\d+)?\s*$"), F.trim(raw).cast("double"))
    return F.timestamp_micros((number * 1_000_000).try_cast("long"))


def _fields(sep_regex: str) -> Column:
    """The line's fields; index them with ``F.get`` (null when missing, not an ANSI-mode error)."""
    return F.split(F.col("value"), sep_regex)


def _without_header(lines: DataFrame, header_prefix: str) -> DataFrame:
    return lines.where(~F.lower(F.col("value")).startswith(header_prefix.lower()))


def read_movielens(lines: DataFrame, rejected_ds: str, separator: str = "\t") -> tuple[DataFrame, DataFrame]:
    """MovieLens ``u.data`` (tab) or ``ratings.dat`` (``::``): user, item, rating, epoch seconds.
    Every rating becomes a ``view`` event (MovieLens has no event types)."""
    parts = _fields("::" if separator == "::" else "\t")
    return _finish(lines, F.size(parts) == 4, F.get(parts, 0), F.get(parts, 1), F.lit("view"),
                   _epoch_seconds(F.get(parts, 3)), F.lit(None).cast("string"), rejected_ds)


def read_gru4rec(lines: DataFrame, rejected_ds: str) -> tuple[DataFrame, DataFrame]:
    """GRU4Rec TSV with header ``SessionId ItemId Time`` (seconds). Sessions are anonymous, so the
    session id is also the user id."""
    lines = _without_header(lines, "SessionId")
    parts = _fields("\t")
    return _finish(lines, F.size(parts) == 3, F.get(parts, 0), F.get(parts, 1), F.lit("click"),
                   _epoch_seconds(F.get(parts, 2)), F.trim(F.get(parts, 0)), rejected_ds)


def read_sequence_file(lines: DataFrame, rejected_ds: str) -> tuple[DataFrame, DataFrame]:
    """One line per user: ``user item1 item2 ...`` in order. Timestamps are synthesized (base +
    position seconds): only the order is real."""
    log.warning("sequence file: timestamps are synthesized from line order (%s + k seconds)",
                SEQUENCE_FILE_BASE_TS)
    tokens = F.split(F.trim(F.col("value")), r"\s+")
    with_items = lines.select("value", F.get(tokens, 0).alias("_user"),
                              F.posexplode_outer(F.slice(tokens, 2, 1 << 30)).alias("_pos", "_item"))
    base = F.to_timestamp(F.lit(SEQUENCE_FILE_BASE_TS))
    ts = F.timestamp_seconds(F.unix_timestamp(base) + F.coalesce(F.col("_pos"), F.lit(0)))
    return _finish(with_items, F.col("_item").isNotNull(), F.col("_user"), F.col("_item"),
                   F.lit("view"), ts, F.lit(None).cast("string"), rejected_ds)


def read_retailrocket(lines: DataFrame, rejected_ds: str) -> tuple[DataFrame, DataFrame]:
    """RetailRocket ``events.csv``: timestamp (ms), visitorid, event, itemid, transactionid."""
    lines = _without_header(lines, "timestamp,")
    parts = _fields(",")
    event = F.lower(F.trim(F.get(parts, 2)))
    mapping = F.create_map(*[F.lit(x) for kv in RETAILROCKET_EVENTS.items() for x in kv])
    millis = F.when(F.get(parts, 0).rlike(r"^\s*\d+\s*$"), F.trim(F.get(parts, 0)).try_cast("long"))
    return _finish(lines, F.size(parts) >= 4, F.get(parts, 1), F.get(parts, 3),
                   F.coalesce(mapping[event], event), F.timestamp_millis(millis),
                   F.lit(None).cast("string"), rejected_ds)


def read_pairs(lines: DataFrame, rejected_ds: str) -> tuple[DataFrame, DataFrame]:
    """One ``user item`` pair per line, each user's lines in order (the SASRec / BERT4Rec files).
    Timestamps are synthesized (base + the pair's position among its user's lines, in file order)."""
    log.warning("pairs file: timestamps are synthesized from line order (%s + k seconds)",
                SEQUENCE_FILE_BASE_TS)
    tokens = F.split(F.trim(F.col("value")), r"\s+")
    # File order: Spark numbers a text file's lines increasingly across its splits.
    numbered = lines.select("value", F.get(tokens, 0).alias("_user"), F.get(tokens, 1).alias("_item"),
                            (F.size(tokens) == 2).alias("_ok"), F.monotonically_increasing_id().alias("_line"))
    position = F.row_number().over(Window.partitionBy("_user").orderBy("_line")) - 1
    base = F.to_timestamp(F.lit(SEQUENCE_FILE_BASE_TS))
    ts = F.timestamp_seconds(F.unix_timestamp(base) + position)
    return _finish(numbered, F.col("_ok"), F.col("_user"), F.col("_item"), F.lit("view"), ts,
                   F.lit(None).cast("string"), rejected_ds)


READERS: dict[str, Callable[[DataFrame, str], tuple[DataFrame, DataFrame]]] = {
    "movielens": read_movielens,
    "movielens-dat": lambda lines, ds: read_movielens(lines, ds, separator="::"),
    "gru4rec": read_gru4rec,
    "sequences": read_sequence_file,
    "pairs": read_pairs,
    "retailrocket": read_retailrocket,
}
TABLE_FORMATS = ("csv", "parquet")
FORMATS = tuple(sorted([*READERS, *TABLE_FORMATS]))
TIME_FORMATS = ("epoch_s", "epoch_ms")
"""Numeric event times; any other ``time_format`` is a Spark datetime pattern (``yyyy-MM-dd HH:mm:ss``)."""


@dataclass(frozen=True)
class ColumnMap:
    """Which input columns hold the event fields (csv and parquet); event and session are optional
    (``view``, and no session, when absent)."""
    user: str
    item: str
    time: str
    event: Optional[str] = None
    session: Optional[str] = None
    time_format: str = "epoch_s"

    @classmethod
    def parse(cls, text: str, time_format: str = "epoch_s") -> "ColumnMap":
        """``user=visitorid,item=itemid,time=timestamp[,event=event][,session=sid]``."""
        fields = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, column = part.partition("=")
            if not sep or key not in ("user", "item", "time", "event", "session") or not column.strip():
                raise UserError(f"--columns: '{part}' must be user=, item=, time=, event= or session= a column name")
            fields[key] = column.strip()
        missing = [k for k in ("user", "item", "time") if k not in fields]
        if missing:
            raise UserError(f"--columns must name the {', '.join(missing)} column(s), e.g. "
                            "user=visitorid,item=itemid,time=timestamp")
        return cls(**fields, time_format=time_format)

    def timestamp(self, raw: Column) -> Column:
        if self.time_format == "epoch_s":
            return _epoch_seconds(raw)
        if self.time_format == "epoch_ms":
            millis = F.when(raw.rlike(r"^\s*\d+\s*$"), F.trim(raw).try_cast("long"))
            return F.timestamp_millis(millis)
        return F.try_to_timestamp(F.trim(raw), F.lit(self.time_format))


def read_table(table: DataFrame, columns: ColumnMap, rejected_ds: str) -> tuple[DataFrame, DataFrame]:
    """Events from named columns of a csv/parquet input (every column as a string)."""
    wanted = [c for c in (columns.user, columns.item, columns.time, columns.event, columns.session) if c]
    absent = [c for c in wanted if c not in table.columns]
    if absent:
        raise UserError(f"input has no column(s) {', '.join(absent)} (it has {', '.join(table.columns)}); "
                        "fix --columns")
    rows = table.select(F.to_json(F.struct(*[F.col(c) for c in table.columns])).alias("value"),
                        *[F.col(c).cast("string").alias(c) for c in dict.fromkeys(wanted)])
    event = F.lower(F.trim(F.col(columns.event))) if columns.event else F.lit("view")
    session = F.trim(F.col(columns.session)) if columns.session else F.lit(None).cast("string")
    return _finish(rows, F.lit(True), F.col(columns.user), F.col(columns.item), event,
                   columns.timestamp(F.col(columns.time)), session, rejected_ds)


def require_path(path: str, spark: Optional[SparkSession] = None) -> None:
    """Raise :class:`NotFoundError` naming ``path`` when it does not exist, instead of Spark's
    PATH_NOT_FOUND after a logged Java FileNotFoundException. Local paths (plain or ``file:``) are
    checked without Spark, so a typo fails before the JVM starts; other URIs (hdfs://, s3a://) through
    the session's Hadoop file system once there is one."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        if not Path(parsed.path if parsed.scheme else path).exists():
            raise NotFoundError(f"input path {path} does not exist")
    elif spark is not None:
        jvm = spark.sparkContext._jvm
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        if not hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(hadoop_path):
            raise NotFoundError(f"input path {path} does not exist")


def read_events(spark: SparkSession, path: str, fmt: str, rejected_ds: str,
                columns: Optional[ColumnMap] = None) -> tuple[DataFrame, DataFrame]:
    """Read ``path`` in format ``fmt`` (one of :data:`FORMATS`; the table formats need ``columns``)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown input format '{fmt}'; known formats: {', '.join(FORMATS)}")
    require_path(path, spark)
    if fmt in TABLE_FORMATS:
        if columns is None:
            raise UserError(f"format {fmt} needs --columns user=...,item=...,time=...")
        if fmt == "csv":
            # Header names the columns; every value stays a string (no inference).
            table = spark.read.csv(path, header=True, inferSchema=False, mode="PERMISSIVE")
        else:
            table = spark.read.parquet(path)
        return read_table(table, columns, rejected_ds)
    lines = spark.read.text(path).where(F.trim(F.col("value")) != "")
    return READERS[fmt](lines, rejected_ds)
