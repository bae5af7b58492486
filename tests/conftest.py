"""One local SparkSession (Hive catalog on an embedded Derby metastore in a temp dir) for all tests."""
from __future__ import annotations

import logging

import pytest

from _stack import CARD, CARD_CONFLICTS, SETTINGS
from recsys_spark.config import Config, load_config
from recsys_spark.session import get_spark


def pytest_collection_modifyitems(config, items):
    """``card_only`` tests are skipped where Petastorm or Horovod cannot run (``make test STACK=current``
    deselects them before they get here)."""
    if CARD:
        return
    skip = pytest.mark.skip(reason="card_only: " + "; ".join(CARD_CONFLICTS))
    for item in items:
        if item.get_closest_marker("card_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def test_root(tmp_path_factory):
    return tmp_path_factory.mktemp("recsys")


@pytest.fixture(scope="session")
def cfg(test_root) -> Config:
    return load_config("local", [
        "spark.master=local[2]",
        f"spark.warehouse_dir={test_root / 'warehouse'}",
        f"spark.metastore_dir={test_root / 'metastore'}",
        f"storage.root={test_root / 'var'}",
        "spark.conf={spark.sql.shuffle.partitions: '4', spark.default.parallelism: '4', "
        "spark.driver.memory: 2g}",
        *SETTINGS,  # the current stack: train.feed=arrow, train.backend=ddp (tests/_stack.py)
    ])


@pytest.fixture(scope="session")
def nightly_runs(tmp_path_factory):
    """The small real nightly (tests/_nightly.py), built once for the e2e and the README tests."""
    from _nightly import run_nightlies
    return run_nightlies(tmp_path_factory.mktemp("nightly_e2e"))


@pytest.fixture(scope="session")
def spark(cfg):
    logging.getLogger("py4j").setLevel(logging.WARNING)
    session = get_spark(cfg)
    yield session
    session.stop()
