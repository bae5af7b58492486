"""A small, complete pipeline world in its own directory (warehouse, Derby metastore, storage root),
driven only through real processes: the test session's SparkSession never opens its metastore."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from _stack import FEED_SETTINGS
from recsys_spark.config import load_config

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("_driver.py")
NIGHT1, NIGHT2 = "2026-11-19", "2026-11-20"
MODEL_A, MODEL_B = "model-a", "model-b"

SMALL = [
    "spark.master=local[2]",
    "spark.conf={spark.sql.shuffle.partitions: '4', spark.default.parallelism: '2', spark.driver.memory: 1g}",
    "synthetic.events_per_day=1500", "synthetic.n_users=200", "synthetic.n_items=150", "synthetic.days=4",
    "synthetic.new_items_per_day=5", "synthetic.partitions=2",
    "sequences.window_length=10", "sequences.stride=5", "sequences.num_negatives=5",
    "sequences.rows_per_row_group=300",
    "train.backend=single", "train.num_proc=1", "train.epochs=1", "train.embedding_dim=16",
    "train.hidden_size=16", "train.batch_size=64", "train.warmup_steps=2", "train.timeout_s=60",
    "evaluate.baselines=[most_popular]", "evaluate.protocols=[leave_last_out]",
    "score.k=10", "score.partitions=2",
    *FEED_SETTINGS,  # the current stack: train.feed=arrow (tests/_stack.py)
]


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable, **extra}
    out.pop("PYSPARK_GATEWAY_PORT", None)
    return out


@dataclass
class World:
    directory: Path
    baseline: dict | None = None
    locations: dict | None = None
    """Where each night's recommendations partition points now (from the latest snapshot)."""

    @property
    def conf(self) -> str:
        return str(self.directory / "world.yaml")

    @property
    def root(self) -> Path:
        return self.directory / "var"

    @property
    def recommendations_dir(self) -> Path:
        return self.directory / "warehouse" / "recsys.db" / "recommendations"

    @classmethod
    def create(cls, directory: Path, extra: list[str] = ()) -> "World":
        cfg = load_config("local", SMALL + [
            f"spark.warehouse_dir={directory / 'warehouse'}", f"spark.metastore_dir={directory / 'metastore'}",
            f"storage.root={directory / 'var'}", *extra])
        cfg.save(directory / "world.yaml")
        return cls(directory)

    def plan(self, steps: list[dict], overrides: list[str] = (), timeout: float = 300,
             extra_env: dict[str, str] | None = None) -> dict:
        """Run ``steps`` (see _driver.py) in one fresh process, every job and the session with the
        config ``overrides``; returns its JSON result (``log``: the process's stderr)."""
        name = uuid.uuid4().hex[:8]
        plan_path, result_path = self.directory / f"plan-{name}.json", self.directory / f"result-{name}.json"
        plan_path.write_text(json.dumps({"conf": self.conf, "overrides": list(overrides), "steps": steps}))
        done = subprocess.run([sys.executable, str(DRIVER), str(plan_path), str(result_path)],
                              cwd=self.directory, env=env(**(extra_env or {})), capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-5000:]
        result = json.loads(result_path.read_text())
        result["log"] = done.stderr
        snapshots = [result[s["snapshot"]] for s in steps if "snapshot" in s]
        if snapshots:
            self.locations = snapshots[-1]["locations"]
        return result

    def command(self, *args: str, extra_env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
        """``recsys <args> --conf <world>`` as a process of its own (its own process group)."""
        return subprocess.Popen([sys.executable, "-m", "recsys_spark.cli", *args, "--conf", self.conf],
                                cwd=self.directory, env=env(**(extra_env or {})), start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def job(name: str, *argv: str) -> dict:
    return {"job": name, "argv": list(argv)}


def rcs(result: dict) -> list:
    return [s["rc"] for s in result["steps"]]


BUILD_WORLD = [
    job("generate_events", "--ds", NIGHT2, "--days", "4"),
    job("build_sequences", "--ds", NIGHT1),
    job("build_sequences", "--ds", NIGHT2),
    job("train", "--ds", NIGHT1, "--model-version", MODEL_A),
    job("train", "--ds", NIGHT2, "--model-version", MODEL_B, "--set", "train.seed=43"),
    {"promote": MODEL_A},
    job("score", "--ds", NIGHT1),
    job("score", "--ds", NIGHT2),
    job("evaluate", "--ds", NIGHT2, "--model-version", MODEL_A),
    {"snapshot": "world"},
]
