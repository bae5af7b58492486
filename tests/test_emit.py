"""``recsys emit-events``: the README's synthetic-traffic form writes JSON-lines files of the latest
published night's users and items into the landing directory (no Spark: it stands in for a producer)."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_spark.emit import event
from test_recommend import publish_night

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("emit")
    publish_night(root, "2026-11-26", "i7", uri=True)  # users u0, u1; items i7, i2
    return root


def emit(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys_spark.cli", "emit-events", *args,
                           "--set", f"storage.root={root}", "--log-level", "WARNING"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_rate_mode_writes_the_nights_users_and_items_at_the_given_rate(root):
    done = emit(root, "--rate", "4", "--seconds", "1", "--files-per-second", "2")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    files = sorted((root / "landing").glob("emit-0-*.json"))
    assert [f.name for f in files] == ["emit-0-00000000.json", "emit-0-00000001.json"]
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(rows) == 4
    assert {r["user_id"] for r in rows} <= {"u0", "u1"} and {r["item_id"] for r in rows} <= {"i7", "i2"}
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(event("u", "i", dt.datetime.now(dt.timezone.utc))))}
    assert not list((root / "landing").glob(".*"))  # no temporary file left behind


def test_nothing_to_emit_is_one_line_and_exit_2(root):
    done = emit(root)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("say what to emit: --user U --items A,B,C, or --rate R [--seconds S]")
