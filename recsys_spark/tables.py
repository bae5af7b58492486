"""Metastore table I/O: create tables from explicit schemas, overwrite whole ``ds`` partitions."""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import schemas as S

log = logging.getLogger(__name__)


def qualified(database: str, table: str) -> str:
    return f"{database}.{table}"


def ensure_table(spark: SparkSession, table: str, schema: T.StructType,
                 partition_by: tuple[str, ...] = (S.DS,)) -> None:
    """Create ``table`` (Parquet, partitioned) with ``schema`` unless it exists with that schema."""
    if spark.catalog.tableExists(table):
        # Compare names and types only: the metastore does not keep nullability.
        existing = {f.name: f.dataType.simpleString() for f in spark.table(table).schema.fields}
        wanted = {f.name: f.dataType.simpleString() for f in schema.fields}
        if existing != wanted:
            raise ValueError(f"table {table} exists with schema {existing}, expected {wanted}; "
                             f"migrate or drop it before running this version")
        return
    (spark.createDataFrame([], schema).write.format("parquet")
     .partitionBy(*partition_by).saveAsTable(table))
    log.info("created table %s partitioned by %s", table, ", ".join(partition_by))


def overwrite_partitions(df: DataFrame, table: str) -> None:
    """Replace exactly the partitions present in ``df`` (dynamic partition overwrite); the rest of
    the table is untouched, so re-running a night is idempotent."""
    columns = spark_table_columns(df.sparkSession, table)
    df.select(*columns).write.insertInto(table, overwrite=True)


def spark_table_columns(spark: SparkSession, table: str) -> list[str]:
    return [f.name for f in spark.table(table).schema.fields]


def read_ds_range(spark: SparkSession, table: str, start_ds: str, end_ds: str) -> DataFrame:
    """Rows of a ``ds``-partitioned table with ``start_ds <= ds <= end_ds`` (partition pruned)."""
    return spark.table(table).where(F.col(S.DS).between(start_ds, end_ds))
