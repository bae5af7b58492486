"""The small real nightly shared by tests/test_nightly_e2e.py and tests/test_readme.py (the session
fixture ``nightly_runs`` in conftest.py builds it once): two consecutive nights, and a backfill of the
same two nights in a fresh warehouse, each warehouse in its own process (tests/scripts/nightly_runs.py)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from _stack import FEED_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
NIGHTS = ("2026-11-25", "2026-11-26")
K = 10
SIMILAR_K = 5
# Tiny and single-process. train.epochs=3, not 1: after one epoch the first night's candidate loses to
# the most_popular bootstrap baseline, the gate refuses, and with no production model there is nothing
# to score; 3 epochs cost ~1 s more. sequences.stride must not exceed the window length.
SETTINGS = [
    "spark.master=local[2]",
    "spark.conf={spark.sql.shuffle.partitions: '2', spark.default.parallelism: '2', "
    "spark.ui.enabled: 'false', spark.driver.memory: 2g}",
    "synthetic.events_per_day=1500", "synthetic.n_users=200", "synthetic.n_items=150", "synthetic.days=4",
    "sequences.window_length=10", "sequences.stride=10", "sequences.num_negatives=5",
    "train.epochs=3", "train.num_proc=1", "train.backend=single",
    "evaluate.baselines=[most_popular,transitions]", f"score.k={K}", f"similar.k={SIMILAR_K}",
    *FEED_SETTINGS,  # the current stack: train.feed=arrow (tests/_stack.py)
]


def nightly_argv(*night_args: str) -> list[str]:
    argv = [*night_args, "--conf", "local"]  # local.yaml: warehouse, metastore, artifacts under ./var
    for setting in SETTINGS:
        argv += ["--set", setting]
    return argv


def start(workdir: Path, runs: list[list[str]]) -> subprocess.Popen:
    workdir.mkdir(parents=True)
    log = open(workdir / "run.log", "w")
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "scripts" / "nightly_runs.py"), json.dumps(runs)],
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def finish(process: subprocess.Popen, workdir: Path) -> None:
    code = process.wait(timeout=1800)  # a hang guard: ~4 min quiet, 20+ min on a machine under load 15
    assert code == 0, f"nightly runs in {workdir} exited {code}:\n" + (workdir / "run.log").read_text()[-6000:]


class Run:
    """What one warehouse holds after its nights: manifests, registry, published rows."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.var = workdir / "var"
        self.published = json.loads((workdir / "published.json").read_text())
        self.manifests = {ds: json.loads((self.var / "runs" / f"ds={ds}" / "manifest.json").read_text())
                          for ds in NIGHTS}
        self.registry = json.loads((self.var / "models" / "registry.json").read_text())

    def recommendations(self, ds: str) -> pd.DataFrame:
        return pd.DataFrame([r for r in self.published["rows"] if r["ds"] == ds])

    def stage(self, ds: str, name: str) -> dict:
        return next(s for s in self.manifests[ds]["stages"] if s["name"] == name)

    def item_index(self, ds: str) -> pd.DataFrame:
        return pd.read_parquet(self.var / "warehouse" / "recsys.db" / "item_index" / f"version={ds}")



def run_nightlies(base: Path) -> dict[str, Run]:
    nightly = start(base / "nightly", [nightly_argv("--ds", NIGHTS[0]), nightly_argv("--ds", NIGHTS[1])])
    backfill = start(base / "backfill", [nightly_argv("--start", NIGHTS[0], "--end", NIGHTS[1])])
    finish(nightly, base / "nightly")
    finish(backfill, base / "backfill")
    return {"nightly": Run(base / "nightly"), "backfill": Run(base / "backfill")}


def assert_quiet_log(text: str) -> None:
    """A healthy run's log: no Python traceback, no Horovod rendezvous chatter, no progress bar
    fragments interleaved by rank-output forwarding (``[0]<stderr>:[0]<stderr>:epoch 1/12: 0%``)."""
    assert "Traceback" not in text, _around(text, "Traceback")
    assert "scope global has keys" not in text, _around(text, "scope global has keys")
    interleaved = re.search(r"<std(?:out|err)>:\[\d+\]<std", text)
    assert interleaved is None, _around(text, interleaved.group(0) if interleaved else "")
    assert "\r" not in text, "carriage-return progress redraws in the log: " + _around(text, "\r")


def _around(text: str, needle: str) -> str:
    at = text.find(needle)
    return text[max(0, at - 1500):at + 1500]
