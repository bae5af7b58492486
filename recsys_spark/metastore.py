"""The Hive metastore seam: one implementation per ``spark.metastore`` kind, chosen by config.

* ``derby``: embedded in the job's own JVM under ``spark.metastore_dir``. Needs no service, admits one
  JVM at a time ("Another instance of Derby may have already booted the database").
* ``postgres``: a shared PostgreSQL database (``spark.metastore_url``), the schema created by Spark's
  built-in Hive client on first use. Any number of jobs and the Thrift Server use it at once.
* ``site``: whatever the cluster's ``hive-site.xml`` says (YARN, Kubernetes, a Hive metastore service).

Each kind says which Spark settings and JVM options it needs, and which secrets it needs set in the
JVM's Hadoop configuration. Secrets never go into Spark settings: PySpark passes those to the JVM
on its command line, where every user of the host could read them.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from recsys_spark.config import ConfigError, SparkConfig

PASSWORD_ENV = "RECSYS_METASTORE_PASSWORD"
HIVE_PASSWORD_KEY = "javax.jdo.option.ConnectionPassword"


class Metastore(Protocol):
    def spark_conf(self) -> dict[str, str]:
        """Spark settings (no secrets)."""

    def java_options(self) -> str:
        """Extra options for the driver JVM."""

    def secrets(self) -> dict[str, str]:
        """Hadoop configuration entries to set in the running JVM before the catalog opens."""


# Settings every Hive-client metastore shares: Spark's built-in Hive 2.3 client creates its schema.
_SCHEMA_BY_SPARK = {
    "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
    "spark.hadoop.hive.metastore.schema.verification": "false",
}


@dataclass(frozen=True)
class DerbyMetastore:
    directory: Path

    def spark_conf(self) -> dict[str, str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        return {"spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={self.directory / 'metastore_db'};create=true", **_SCHEMA_BY_SPARK}

    def java_options(self) -> str:
        return f"-Dderby.system.home={self.directory}"

    def secrets(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class PostgresMetastore:
    url: str
    user: str
    password_file: Optional[Path]
    driver_jar: Optional[str]

    def spark_conf(self) -> dict[str, str]:
        conf = {
            "spark.hadoop.javax.jdo.option.ConnectionURL": self.url,
            "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
            "spark.hadoop.javax.jdo.option.ConnectionUserName": self.user,
            **_SCHEMA_BY_SPARK,
        }
        if self.driver_jar:
            conf["spark.driver.extraClassPath"] = self.driver_jar
        return conf

    def java_options(self) -> str:
        return ""

    def secrets(self) -> dict[str, str]:
        return {HIVE_PASSWORD_KEY: self.password()}

    def password(self) -> str:
        if os.environ.get(PASSWORD_ENV):
            return os.environ[PASSWORD_ENV]
        if self.password_file is None:
            raise ConfigError(f"spark.metastore=postgres needs the metastore password: set {PASSWORD_ENV} "
                              "or spark.metastore_password_file")
        if not self.password_file.exists():
            raise ConfigError(f"metastore password file {self.password_file} does not exist: start the "
                              "platform first (scripts/platform.sh up) or set " + PASSWORD_ENV)
        if self.password_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"metastore password file {self.password_file} is readable by others: "
                              f"chmod 600 {self.password_file}")
        return self.password_file.read_text().strip()


@dataclass(frozen=True)
class SiteMetastore:
    def spark_conf(self) -> dict[str, str]:
        return {}

    def java_options(self) -> str:
        return ""

    def secrets(self) -> dict[str, str]:
        return {}


def metastore_for(sc: SparkConfig) -> Metastore:
    if sc.metastore == "derby":
        if not sc.metastore_dir:
            raise ConfigError("spark.metastore=derby needs spark.metastore_dir")
        return DerbyMetastore(Path(sc.metastore_dir).resolve())
    if sc.metastore == "postgres":
        if not sc.metastore_url:
            raise ConfigError("spark.metastore=postgres needs spark.metastore_url (jdbc:postgresql://...)")
        return PostgresMetastore(sc.metastore_url, sc.metastore_user,
                                 Path(sc.metastore_password_file).resolve() if sc.metastore_password_file else None,
                                 sc.jdbc_driver_jar)
    if sc.metastore == "site":
        return SiteMetastore()
    raise ConfigError(f"spark.metastore: expected derby, postgres or site, got {sc.metastore!r}")
