"""The one SparkSession factory, driven by :class:`~recsys_spark.config.SparkConfig`.

Library code never calls this: jobs build the session once and pass it down.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from recsys_spark.config import Config

log = logging.getLogger(__name__)

LOG4J_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"


def _absolute(location: str) -> str:
    """Local paths become absolute (Spark resolves relative ones against odd roots); URIs stay."""
    return location if "://" in location else str(Path(location).resolve())


def spark_conf(cfg: Config) -> dict[str, str]:
    """The Spark settings implied by the config, before ``spark.conf`` passthrough entries."""
    sc = cfg.spark
    java_options = f"-Duser.timezone=UTC -Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.executor.extraJavaOptions": java_options,
    }
    if sc.warehouse_dir:
        conf["spark.sql.warehouse.dir"] = _absolute(sc.warehouse_dir)
    if sc.hive:
        conf["spark.sql.catalogImplementation"] = "hive"
    if sc.hive and sc.metastore_dir:
        metastore = Path(sc.metastore_dir).resolve()
        metastore.mkdir(parents=True, exist_ok=True)
        conf.update({
            # Embedded Derby: a single-process metastore kept under the local var/ directory.
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={metastore / 'metastore_db'};create=true",
            "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
            "spark.hadoop.hive.metastore.schema.verification": "false",
        })
        java_options += f" -Dderby.system.home={metastore}"
    conf["spark.driver.extraJavaOptions"] = java_options
    conf.update(sc.conf)
    return conf


def launched_by_spark_submit() -> bool:
    """Under spark-submit the JVM starts first and hands Python its gateway port: the master and the
    driver's JVM options then come from the spark-submit command line, not from the config."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(cfg: Config) -> SparkSession:
    """Create (or return the active) SparkSession for ``cfg`` and make sure the database exists."""
    # Python workers must run the interpreter that runs the driver (the project's virtualenv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if not launched_by_spark_submit():
        builder = builder.master(cfg.spark.master)
    for key, value in spark_conf(cfg).items():
        builder = builder.config(key, value)
    if cfg.spark.hive:
        builder = builder.enableHiveSupport()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.storage.database}")
    log.info("Spark %s master=%s hive=%s database=%s", spark.version, spark.sparkContext.master,
             cfg.spark.hive, cfg.storage.database)
    return spark
