"""The metastore seam: each kind's Spark settings, and the PostgreSQL password kept out of them."""
from __future__ import annotations

import pytest

from recsys_spark.config import ConfigError, load_config
from recsys_spark.metastore import HIVE_PASSWORD_KEY, PASSWORD_ENV, metastore_for
from recsys_spark.platform import Platform
from recsys_spark.session import spark_conf


def standalone(tmp_path, *settings):
    return load_config("standalone", [f"spark.metastore_password_file={tmp_path / 'pw'}", *settings])


def test_standalone_is_the_local_pipeline_on_another_deployment():
    local, cluster = load_config("local"), load_config("standalone")
    assert cluster.spark.master == "spark://127.0.0.1:7077" and cluster.spark.metastore == "postgres"
    assert cluster.model_hash() == local.model_hash()  # same models, same versions
    assert cluster.train.epochs == local.train.epochs == 12


def test_derby_settings_point_at_the_metastore_dir(tmp_path):
    conf = spark_conf(load_config("local", [f"spark.metastore_dir={tmp_path}"]))
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"].startswith(f"jdbc:derby:;databaseName={tmp_path}")
    assert f"-Dderby.system.home={tmp_path}" in conf["spark.driver.extraJavaOptions"]


def test_postgres_password_comes_from_the_private_file_and_never_enters_spark_settings(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    (tmp_path / "pw").write_text("s3cret-value\n")
    (tmp_path / "pw").chmod(0o600)
    cfg = standalone(tmp_path)
    conf = spark_conf(cfg)
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == "jdbc:postgresql://127.0.0.1:55432/metastore"
    assert conf["spark.driver.extraClassPath"] == "/usr/share/java/postgresql.jar"
    assert "s3cret-value" not in repr(conf) and "s3cret-value" not in cfg.to_yaml()
    assert metastore_for(cfg.spark).secrets() == {HIVE_PASSWORD_KEY: "s3cret-value"}
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert metastore_for(cfg.spark).secrets() == {HIVE_PASSWORD_KEY: "from-env"}


def test_a_password_file_others_can_read_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    (tmp_path / "pw").write_text("s3cret-value\n")
    (tmp_path / "pw").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others: chmod 600"):
        metastore_for(standalone(tmp_path).spark).secrets()


def test_a_missing_password_file_says_to_start_the_platform(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"does not exist: start the platform first \(scripts/platform.sh up\)"):
        metastore_for(standalone(tmp_path).spark).secrets()


@pytest.mark.parametrize("setting, message", [
    ("spark.metastore=oracle", "expected derby, postgres or site"),
    ("spark.metastore_url=null", "needs spark.metastore_url"),
])
def test_bad_metastore_settings_name_the_key(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        spark_conf(standalone(tmp_path, setting))


def test_the_platform_refuses_a_config_without_a_postgres_metastore():
    with pytest.raises(ConfigError, match="spark.metastore=derby"):
        Platform(load_config("local"))


def test_extends_loops_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(str(tmp_path / "a.yaml"))
