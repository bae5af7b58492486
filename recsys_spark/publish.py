"""Publishing a night of a served table: stage, check, then swap the ``ds`` partition in one step.

Each run writes its rows under ``<table location>/_versions/ds=<ds>/run=<id>`` (Spark and Hive ignore
paths starting with ``_`` when listing a table), the invariants are checked on exactly those files,
and only then the metastore points partition ``ds`` at the new directory (``ADD PARTITION ... LOCATION``
or ``SET LOCATION``): one metastore update, so readers see the old night or the new one, never a mix.
A failed check or a crash before the swap leaves the published partition untouched. One mechanism
for every served table (``recommendations``, ``similar_items``): a :class:`Contract` names the table,
its schema and its key, and each table brings its own checks.
"""
from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

from pyspark.sql import Column, DataFrame, SparkSession
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


@dataclass(frozen=True)
class Contract:
    """A served table: its name in ``storage.database``, its schema (``ds`` last), the column with
    exactly one row per night (``key``), its list column, and what a row is (``unit``, for messages)."""
    table: str
    schema: T.StructType
    key: str
    list_column: str
    unit: str

    @property
    def staged_schema(self) -> T.StructType:
        return T.StructType([f for f in self.schema.fields if f.name != S.DS])


RECOMMENDATIONS_CONTRACT = Contract(RECOMMENDATIONS, RECOMMENDATIONS_SCHEMA, S.USER_ID, RECS, "users")


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


def stage(spark: SparkSession, database: str, rows: DataFrame, ds: str, partitions: int,
          contract: Contract = RECOMMENDATIONS_CONTRACT) -> str:
    """Write tonight's rows to a fresh run directory; returns its location."""
    table = qualified(database, contract.table)
    ensure_table(spark, table, contract.schema)
    location = f"{table_location(spark, table)}/{VERSIONS_DIR}/ds={ds}/run={uuid.uuid4().hex[:12]}"
    (rows.drop(S.DS).repartition(partitions, contract.key).sortWithinPartitions(contract.key)
     .write.mode("error").parquet(location))
    return location


def read_staged(spark: SparkSession, location: str, contract: Contract = RECOMMENDATIONS_CONTRACT) -> DataFrame:
    return spark.read.schema(contract.staged_schema).parquet(location)


def check_lists(staged: DataFrame, contract: Contract, expected: DataFrame, vocabulary: DataFrame,
                k: int, row_checks: Optional[dict[str, Column]] = None) -> dict[str, int]:
    """Violations every served list table shares: one row per key of ``expected`` and no other, k
    distinct items of ``vocabulary`` (item_ids) per list, ranks 1..k, finite non-increasing scores;
    plus the table's own ``row_checks`` (name -> condition a bad row meets). The row conditions are
    counted in one pass over the staged rows: each check as its own Spark job would multiply the
    publish time."""
    key, lists = contract.key, F.col(contract.list_column)
    n = F.size(lists)
    rows = {
        "wrong_list_length": n != k,
        "repeated_items": F.size(F.array_distinct(F.transform(lists, lambda r: r[S.ITEM_ID]))) != n,
        "bad_ranks": F.exists(F.transform(lists, lambda r, i: r[RANK] != i + 1), lambda bad: bad),
        # CASE WHEN, not AND: Spark evaluates both sides of an AND, and element_at past the end of a
        # shorter list fails the query (ANSI) instead of counting it as wrong_list_length.
        "increasing_scores": F.when(n > 1, F.exists(
            F.sequence(F.lit(1), n - 1),
            lambda i: F.element_at(lists, i + 1)[SCORE] > F.element_at(lists, i)[SCORE])).otherwise(False),
        "bad_scores": F.exists(lists, lambda r: r[SCORE].isNull() | F.isnan(r[SCORE])
                               | (F.abs(r[SCORE]) == float("inf"))),
        **(row_checks or {}),
    }
    counts = staged.agg(*[F.count(F.when(bad, True)).alias(name) for name, bad in rows.items()]).first()
    items = staged.select(F.explode(lists).alias("_rec")).select(F.col("_rec." + S.ITEM_ID).alias(S.ITEM_ID))
    return {
        f"duplicate_{contract.unit}": staged.groupBy(key).count().where(F.col("count") > 1).count(),
        f"missing_{contract.unit}": expected.join(staged, key, "left_anti").count(),
        f"unexpected_{contract.unit}": staged.join(expected, key, "left_anti").count(),
        **counts.asDict(),
        "unknown_items": items.join(vocabulary.select(S.ITEM_ID), S.ITEM_ID, "left_anti").count(),
    }


def check_recommendations(staged: DataFrame, users: DataFrame, vocabulary: DataFrame, k: int,
                          mask_seen: bool) -> dict[str, int]:
    """Count violations of the output contract; every value must be 0 to publish.

    ``users`` holds (user_id, seen) of every user that must get a row; ``vocabulary`` the item_ids."""
    checks = check_lists(staged, RECOMMENDATIONS_CONTRACT, users.select(S.USER_ID), vocabulary, k,
                         {"bad_source": ~F.col(SOURCE).isin(SOURCE_MODEL, SOURCE_FALLBACK)})
    recs = staged.select(S.USER_ID, F.explode(RECS).alias("_rec"))
    item = F.col("_rec." + S.ITEM_ID)
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


def publish_night(spark: SparkSession, database: str, contract: Contract, rows: DataFrame, ds: str,
                  partitions: int, checks: Callable[[DataFrame], dict[str, int]], *,
                  storage_root: str | Path, model_version: str, band: Optional[list[float]] = None,
                  describe: Optional[Callable[[DataFrame], dict]] = None) -> dict:
    """The whole publish protocol for one table; raises :class:`PublishError` (nothing published)
    when ``checks(staged)`` counts any violation or the row count leaves ``band``. ``describe`` adds
    figures of the staged rows to the result. After the swap the night's publish record
    (:mod:`recsys_spark.published`) under ``storage_root`` names the new location, for readers
    without Spark."""
    table = qualified(database, contract.table)
    location = stage(spark, database, rows, ds, partitions, contract)
    staged = read_staged(spark, location, contract).cache()
    n_rows = staged.count()
    problems = {name: n for name, n in checks(staged).items() if n}
    band_problem = check_row_count(spark, table, ds, n_rows, band) if band else None
    details = describe(staged) if describe else {}
    staged.unpersist()
    if problems or band_problem:
        message = "; ".join([f"{name}: {n} rows" for name, n in problems.items()] + ([band_problem] if band_problem else []))
        raise PublishError(f"{contract.table} for {ds} not published ({location} left unpublished): {message}")
    previous = publish_partition(spark, table, ds, location)
    write_record(storage_root, table, ds, location, n_rows, model_version)
    remove_stale_runs(location.rsplit("/", 1)[0], {location, previous or ""})
    log.info("published %s partition ds=%s: %d %s %s -> %s", table, ds, n_rows, contract.unit, details, location)
    return {"rows": n_rows, **details, "location": location, "replaced": previous}


def stage_and_publish(spark: SparkSession, database: str, recommendations: DataFrame, users: DataFrame,
                      vocabulary: DataFrame, ds: str, k: int, mask_seen: bool, band: list[float],
                      partitions: int, *, storage_root: str | Path, model_version: str) -> dict:
    """Publish a night of ``recommendations`` (:func:`publish_night` with its checks and row-count
    band); the result counts the users per source."""
    return publish_night(
        spark, database, RECOMMENDATIONS_CONTRACT, recommendations, ds, partitions,
        lambda staged: check_recommendations(staged, users, vocabulary, k, mask_seen),
        storage_root=storage_root, model_version=model_version, band=band,
        describe=lambda staged: {"sources": {r[SOURCE]: r["count"] for r in staged.groupBy(SOURCE).count().collect()}})
