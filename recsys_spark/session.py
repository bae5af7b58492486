"""The one SparkSession factory, driven by :class:`~recsys_spark.config.SparkConfig`.

Library code never calls this: jobs build the session once and pass it down.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.metastore import metastore_for

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
        metastore = metastore_for(sc)
        conf.update(metastore.spark_conf())
        java_options = f"{java_options} {metastore.java_options()}".strip()
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
    settings = spark_conf(cfg)
    conf = SparkConf().setAppName(cfg.spark.app_name).setAll(list(settings.items()))
    if not launched_by_spark_submit():
        conf.setMaster(cfg.spark.master)
    context = SparkContext.getOrCreate(conf)
    # The metastore's secrets go into the running JVM's Hadoop configuration, which the Hive client
    # copies when the catalog first opens below: never onto a command line or into a log.
    if cfg.spark.hive:
        hadoop = context._jsc.hadoopConfiguration()
        for key, value in metastore_for(cfg.spark).secrets().items():
            hadoop.set(key, value)
    spark = SparkSession.builder.getOrCreate()
    # A process that runs several jobs (tests, notebooks) keeps its first context: apply the SQL
    # settings that can still change to the session, as SparkSession.builder would.
    for key, value in settings.items():
        if key.startswith("spark.sql.") and spark.conf.isModifiable(key):
            spark.conf.set(key, value)
    context.setLogLevel("WARN")
    # Asked first: from Spark 4.1 on, CREATE DATABASE IF NOT EXISTS calls the Hive metastore's create
    # anyway, which logs an ERROR with a Java stack trace for a database that exists.
    if not spark.catalog.databaseExists(cfg.storage.database):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.storage.database}")
    log.info("Spark %s master=%s hive=%s metastore=%s database=%s", spark.version, context.master,
             cfg.spark.hive, cfg.spark.metastore if cfg.spark.hive else None, cfg.storage.database)
    return spark
