"""The ``events`` input table and its quarantine table ``events_rejected``."""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.tables import ensure_table, overwrite_partitions, qualified

log = logging.getLogger(__name__)

EVENTS = "events"
EVENTS_REJECTED = "events_rejected"


def events_table(database: str) -> str:
    return qualified(database, EVENTS)


def rejected_table(database: str) -> str:
    return qualified(database, EVENTS_REJECTED)


def write_events(spark: SparkSession, database: str, events: DataFrame, ds_values: list[str]) -> int:
    """Overwrite the ``ds`` partitions of ``recsys.events`` present in ``events`` (all within
    ``ds_values``); returns the row count now stored for ``ds_values``."""
    table = events_table(database)
    ensure_table(spark, table, S.EVENTS_TABLE_SCHEMA)
    overwrite_partitions(events, table)
    written = spark.table(table).where(F.col(S.DS).isin(ds_values)).count()
    log.info("wrote %d events into %s for %d night(s) %s..%s", written, table, len(ds_values),
             min(ds_values), max(ds_values))
    return written


def write_rejected(spark: SparkSession, database: str, rejected: DataFrame, ds: str, stage: str) -> dict[str, int]:
    """Replace the quarantined rows of (``ds``, ``stage``) with ``rejected``; returns counts per reason.

    An empty ``rejected`` clears the partition, so a re-run with cleaner input leaves no stale rows."""
    table = rejected_table(database)
    ensure_table(spark, table, S.REJECTED_SCHEMA, partition_by=(S.DS, S.STAGE))
    rejected = rejected.withColumn(S.DS, F.lit(ds)).withColumn(S.STAGE, F.lit(stage)).cache()
    counts = {r[S.REASON]: r["n"] for r in
              rejected.groupBy(S.REASON).agg(F.count(F.lit(1)).alias("n")).collect()}
    if counts:
        overwrite_partitions(rejected, table)
        log.warning("quarantined %d rows into %s (ds=%s, stage=%s): %s",
                    sum(counts.values()), table, ds, stage, counts)
    else:
        spark.sql(f"ALTER TABLE {table} DROP IF EXISTS PARTITION ({S.DS}='{ds}', {S.STAGE}='{stage}')")
    rejected.unpersist()
    return counts


def existing_nights(spark: SparkSession, database: str, start: str, end: str) -> set[str]:
    """The ``ds`` partitions of ``recsys.events`` in ``[start, end]`` (from the metastore, no scan)."""
    table = events_table(database)
    if not spark.catalog.tableExists(table):
        return set()
    nights = {row[0].split("=", 1)[1] for row in spark.sql(f"SHOW PARTITIONS {table}").collect()}
    return {d for d in nights if start <= d <= end}
