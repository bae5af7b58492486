"""The cluster suite: real jobs on the platform of scripts/platform.sh (PostgreSQL metastore, Spark
standalone master and two workers, Spark Thrift Server), which must be up: `make test-cluster`
starts it, runs `pytest -m cluster` and stops it. Every test here carries the `cluster` marker."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from recsys_spark.config import load_config
from recsys_spark.platform import Platform

ROOT = Path(__file__).resolve().parents[2]
RECSYS = Path(sys.executable).parent / "recsys"

# One small night (the nightly e2e test's sizes), trained with the default 2 Horovod ranks.
SMALL_NIGHT = [
    "synthetic.events_per_day=1500", "synthetic.n_users=200", "synthetic.n_items=150", "synthetic.days=4",
    "sequences.window_length=10", "sequences.stride=10", "sequences.num_negatives=5",
    "train.epochs=3", "evaluate.baselines=[most_popular,transitions]", "score.k=10",
]


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.cluster)
    # The README's blocks end with `make platform-down` (and start the platform again): run them last.
    items.sort(key=lambda item: Path(item.fspath).name == "test_readme_cluster.py")


@pytest.fixture(scope="session")
def platform() -> Platform:
    platform = Platform(load_config("standalone"))
    if not all(platform.running(part) for part in platform.parts()):
        pytest.fail("the platform is not running: start it with `make platform-up` (or run `make test-cluster`)")
    return platform


@pytest.fixture(scope="session")
def cluster_world(tmp_path_factory) -> tuple[Path, list[str]]:
    """A fresh database and storage root of this run on the shared metastore (other runs keep theirs)."""
    root = tmp_path_factory.mktemp("cluster")
    settings = [f"storage.database=ci_{uuid.uuid4().hex[:8]}", f"storage.root={root / 'var'}",
                f"spark.warehouse_dir={root / 'warehouse'}", *SMALL_NIGHT]
    return root, settings


def recsys(command: str, *args: str, conf: str, settings: list[str], log: Path,
           timeout: int = 900, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """Run `recsys COMMAND` as a user would, from the repository root; output appended to ``log``."""
    argv = [str(RECSYS), command, *args, "--conf", conf]
    for setting in settings:
        argv += ["--set", setting]
    with open(log, "a") as out:
        done = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}, **popen)
    if check:
        assert done.returncode == 0, f"recsys {command} exited {done.returncode}:\n{log.read_text()[-6000:]}"
    return done
