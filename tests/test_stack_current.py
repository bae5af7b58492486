"""The `current` stack end to end: ``make nightly STACK=current`` installs ``.venv-current`` from
``constraints-current.txt`` (the newest PySpark and pyarrow, numpy 2, no Petastorm, no Horovod) and
runs the README's night there, trained with DDP over the Arrow feed, published as on `card`."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv-current" / "bin" / "python"
DS = "2026-11-26"  # the Makefile's default night


@pytest.fixture(scope="module")
def night() -> dict:
    # Without the card interpreter this suite's Spark session exported for its own Python workers.
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    result = subprocess.run(["make", "nightly", "STACK=current"], cwd=ROOT, capture_output=True, text=True,
                            timeout=3600, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Traceback" not in output and "\tat org." not in output, output[-4000:]  # no Python or Java stack
    return json.loads((ROOT / "var" / "runs" / f"ds={DS}" / "manifest.json").read_text())


def test_make_nightly_on_the_current_stack_publishes_a_night_with_ddp_and_arrow(night):
    probe = ("import importlib.util as u, numpy, pandas, pyarrow, pyspark, json; print(json.dumps({"
             "'pyspark': pyspark.__version__, 'pyarrow': pyarrow.__version__, 'numpy': numpy.__version__, "
             "'pandas': pandas.__version__, 'petastorm': bool(u.find_spec('petastorm')), "
             "'horovod': bool(u.find_spec('horovod'))}))")
    versions = json.loads(subprocess.check_output([str(PYTHON), "-c", probe], text=True))
    assert versions == {"pyspark": "4.3.0", "pyarrow": "26.0.1", "numpy": "2.4.6", "pandas": "2.3.3",
                        "petastorm": False, "horovod": False}
    stages = {stage["name"]: stage for stage in night["stages"]}
    assert all(stage["status"] == "ok" for stage in stages.values()), stages
    version = stages["train"]["details"]["model_version"]
    trained = json.loads((ROOT / "var" / "models" / version / "metrics.json").read_text())
    assert (trained["feed"], trained["backend"], trained["world_size"]) == ("arrow", "ddp", 2)
    assert night["outcome"]["gate_approved"] and stages["score"]["details"]["model_version"] == version
    assert stages["score"]["details"]["rows"] == stages["build_sequences"]["details"]["users"] > 1000


def test_the_current_stack_refuses_petastorm_before_any_work(night):
    """The twin: what the night above avoided is refused there in one line that names the way out."""
    result = subprocess.run([str(ROOT / ".venv-current" / "bin" / "recsys"), "train", "--ds", DS,
                             "--set", "train.feed=petastorm", "--set", "train.backend=ddp"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]  # a config error
    assert result.stderr.strip().splitlines()[-1].startswith("recsys train: error: train.feed=petastorm")
    assert "set train.feed=arrow" in result.stderr
