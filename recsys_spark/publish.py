"""Publishing a night's recommendations: stage, check, then swap the ``ds`` partition in one step.

Each run writes its rows under ``<table location>/_versions/ds=<ds>/run=<id>`` (Spark and Hive ignore
paths starting with ``_`` when listing a table), the invariants are checked on exactly those files,
and only then the metastore points partition ``ds`` at the new directory (``ADD PARTITION ... LOCATION``
or ``SET LOCATION``): one metastore update, so readers see the old night or the new one, never a mix.
A failed check or a crash before the swap leaves the published partition untouched.
"""
from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import schemas as S
from recsys_spark.errors import DataError
from recsys_spark.published import RECOMMENDATIONS, write_record
from recsys_spark.scoring import (RANK, RECOMMENDATIONS_SCHEMA, RECS, SCORE, SOURCE, SOURCE_FALLBACK,
                                  SOURCE_MODEL)
from recsys_spark.tables import ensure_table, qualified

log = logging.getLogger(__name__)

VERSIONS_DIR = "_versions"
STAGED_SCHEMA = T.StructType([f for f in RECOMMENDATIONS_SCHEMA.fields if f.name != S.DS])


class PublishError(DataError):
    """The staged recommendations break an invariant; nothing was published."""


def recommendations_table(database: str) -> str:
    return qualified(database, RECOMMENDATIONS)


def table_location(spark: SparkSession, table: str) -> str:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect()
    return next(r.data_type for r in rows if r.col_name == "Location")


def partition_location(spark: SparkSession, table: str, ds: str) -> Optional[str]:
    if not partition_exists(spark, table, ds):
        return None
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {table} PARTITION ({S.DS}='{ds}')").collect()
    return next(r.data_type for r in rows if r.col_name == "Location")


def partition_exists(spark: SparkSession, table: str, ds: str) -> bool:
    return any(r[0] == f"{S.DS}={ds}" for r in spark.sql(f"SHOW PARTITIONS {table}").collect())


def stage(spark: SparkSession, database: str, recommendations: DataFrame, ds: str, partitions: int) -> str:
    """Write tonight's rows to a fresh run directory; returns its location."""
    table = recommendations_table(database)
    ensure_table(spark, table, RECOMMENDATIONS_SCHEMA)
    location = f"{table_location(spark, table)}/{VERSIONS_DIR}/ds={ds}/run={uuid.uuid4().hex[:12]}"
    (recommendations.drop(S.DS).repartition(partitions, S.USER_ID).sortWithinPartitions(S.USER_ID)
     .write.mode("error").parquet(location))
    return location


def read_staged(spark: SparkSession, location: str) -> DataFrame:
    return spark.read.schema(STAGED_SCHEMA).parquet(location)


def check_recommendations(staged: DataFrame, users: DataFrame, vocabulary: DataFrame, k: int,
                          mask_seen: bool) -> dict[str, int]:
    """Count violations of the output contract; every value must be 0 to publish.

    ``users`` holds (user_id, seen) of every user that must get a row; ``vocabulary`` the item_ids."""
    per_user = staged.groupBy(S.USER_ID).count()
    recs = staged.select(S.USER_ID, F.posexplode(RECS).alias("_pos", "_rec"))
    item = F.col("_rec." + S.ITEM_ID)
    checks = {
        "duplicate_users": per_user.where(F.col("count") > 1).count(),
        "missing_users": users.join(staged, S.USER_ID, "left_anti").count(),
        "unexpected_users": staged.join(users, S.USER_ID, "left_anti").count(),
        "wrong_list_length": staged.where(F.size(RECS) != k).count(),
        "repeated_items": staged.where(F.size(F.array_distinct(F.transform(RECS, lambda r: r[S.ITEM_ID])))
                                       != F.size(RECS)).count(),
        "bad_ranks": recs.where(F.col("_rec." + RANK) != F.col("_pos") + 1).count(),
        "increasing_scores": staged.where(F.exists(
            F.sequence(F.lit(1), F.greatest(F.size(RECS) - 1, F.lit(1))),
            lambda i: F.element_at(RECS, i + 1)[SCORE] > F.element_at(RECS, i)[SCORE])
            & (F.size(RECS) > 1)).count(),
        "bad_scores": recs.where(F.isnan(F.col("_rec." + SCORE)) | F.col("_rec." + SCORE).isNull()
                                 | (F.abs(F.col("_rec." + SCORE)) == float("inf"))).count(),
        "unknown_items": recs.join(vocabulary.select(F.col(S.ITEM_ID).alias("_item")),
                                   item == F.col("_item"), "left_anti").count(),
        "bad_source": staged.where(~F.col(SOURCE).isin(SOURCE_MODEL, SOURCE_FALLBACK)).count(),
    }
    if mask_seen:
        seen = users.select(S.USER_ID, F.explode(S.SEEN).alias(S.ITEM_IDX)) \
            .join(vocabulary.select(S.ITEM_ID, S.ITEM_IDX), S.ITEM_IDX)
        checks["seen_items_recommended"] = recs.select(S.USER_ID, item.alias(S.ITEM_ID)) \
            .join(seen, [S.USER_ID, S.ITEM_ID]).count()
    return checks


def check_row_count(spark: SparkSession, table: str, ds: str, n_rows: int, band: list[float]) -> Optional[str]:
    """A problem description when tonight's row count is outside ``band`` x the previous published night."""
    previous = [r[0].split("=", 1)[1] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()]
    previous = sorted(d for d in previous if d < ds)
    if not previous:
        return None
    n_prev = spark.table(table).where(F.col(S.DS) == previous[-1]).count()
    low, high = band
    if n_prev and not low <= n_rows / n_prev <= high:
        return (f"{n_rows} users tonight vs {n_prev} on {previous[-1]}: ratio {n_rows / n_prev:.2f} is outside "
                f"the configured band [{low}, {high}] (score.row_count_band)")
    return None


def publish_partition(spark: SparkSession, table: str, ds: str, location: str) -> Optional[str]:
    """Point partition ``ds`` at ``location`` in one metastore update; returns the previous location."""
    previous = partition_location(spark, table, ds)
    if previous is None:
        spark.sql(f"ALTER TABLE {table} ADD PARTITION ({S.DS}='{ds}') LOCATION '{location}'")
    else:
        spark.sql(f"ALTER TABLE {table} PARTITION ({S.DS}='{ds}') SET LOCATION '{location}'")
    spark.catalog.refreshTable(table)
    return previous


def remove_stale_runs(ds_dir: str, keep: set[str]) -> None:
    """Delete run directories of a night that no partition points at (staged by failed or superseded
    runs), keeping ``keep`` (the published one and the one it replaced, for readers mid-scan)."""
    local = Path(urlparse(ds_dir).path)
    if not local.exists():
        return
    keep_names = {Path(urlparse(k).path).name for k in keep if k}
    for run in local.iterdir():
        if run.name not in keep_names:
            shutil.rmtree(run, ignore_errors=True)


def stage_and_publish(spark: SparkSession, database: str, recommendations: DataFrame, users: DataFrame,
                      vocabulary: DataFrame, ds: str, k: int, mask_seen: bool, band: list[float],
                      partitions: int, *, storage_root: str | Path, model_version: str) -> dict:
    """The whole publish protocol; raises :class:`PublishError` (nothing published) on any violation.
    After the swap the night's publish record (:mod:`recsys_spark.published`) under ``storage_root``
    names the new location, for readers without Spark."""
    table = recommendations_table(database)
    location = stage(spark, database, recommendations, ds, partitions)
    staged = read_staged(spark, location).cache()
    n_rows = staged.count()
    problems = {name: n for name, n in check_recommendations(staged, users, vocabulary, k, mask_seen).items() if n}
    band_problem = check_row_count(spark, table, ds, n_rows, band)
    sources = {r[SOURCE]: r["count"] for r in staged.groupBy(SOURCE).count().collect()}
    staged.unpersist()
    if problems or band_problem:
        message = "; ".join([f"{name}: {n} rows" for name, n in problems.items()] + ([band_problem] if band_problem else []))
        raise PublishError(f"recommendations for {ds} not published ({location} left unpublished): {message}")
    previous = publish_partition(spark, table, ds, location)
    write_record(storage_root, table, ds, location, n_rows, model_version)
    remove_stale_runs(location.rsplit("/", 1)[0], {location, previous or ""})
    log.info("published %s partition ds=%s: %d users %s -> %s", table, ds, n_rows, sources, location)
    return {"rows": n_rows, "sources": sources, "location": location, "replaced": previous}
