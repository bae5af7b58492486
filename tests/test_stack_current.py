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

# Every test here runs .venv-current in subprocesses, whichever interpreter runs pytest: the card suite
# runs them and make test STACK=current leaves them out (the same ~4-minute night twice otherwise).
pytestmark = pytest.mark.stack_independent


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


# What `make test STACK=current` leaves out: the tests that exist for Petastorm or Horovod themselves
# (README "Stack"). A test newly marked card_only must be added here, and to the README's list.
CARD_ONLY = {
    "tests/reliability/test_training_kill.py::test_killed_rank_fails_the_job_and_resume_finishes",
    "tests/test_stack_smoke.py::test_petastorm_reads_spark_parquet_into_torch",
    "tests/test_stack_smoke.py::test_two_horovod_processes_keep_lstm_parameters_in_sync",
    "tests/test_training_data.py::test_petastorm_reads_spark_parquet_into_tensors",
    "tests/test_training_data.py::test_shard_row_counts_replay_petastorm_sharding",
    "tests/test_training_data.py::test_every_rank_yields_the_same_number_of_batches_deterministically",
    "tests/test_training_data.py::test_too_few_rows_or_row_groups_fail_clearly",
    "tests/test_training_distributed.py::test_two_ranks_on_uneven_shards_end_in_sync[horovod-spark]",
    "tests/test_training_distributed.py::test_two_ranks_on_uneven_shards_end_in_sync[horovod-horovodrun]",
    "tests/test_training_distributed.py::test_ddp_learns_what_horovod_learns",
    "tests/test_training_distributed.py::test_hung_rank_fails_within_the_timeout",
    "tests/test_training_feeds.py::test_both_feeds_yield_the_same_examples_per_rank_every_epoch",
    "tests/test_training_feeds.py::test_twin_the_comparison_fails_when_one_example_differs",
    "tests/test_training_feeds.py::test_the_trainer_learns_the_same_from_either_feed",
}


STACK_INDEPENDENT = {f"tests/test_stack_current.py::{name}" for name in (
    "test_make_nightly_on_the_current_stack_publishes_a_night_with_ddp_and_arrow",
    "test_the_current_stack_refuses_petastorm_before_any_work",
    "test_make_test_on_the_current_stack_runs_all_but_the_card_only_tests")}


def _collected(python: Path, *args: str) -> set[str]:
    result = subprocess.run([str(python), "-m", "pytest", "--collect-only", "-q", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=_without_pyspark_python())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]  # imports fine, no errors
    return {line for line in result.stdout.splitlines() if "::" in line}


def _without_pyspark_python() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}


def test_make_test_on_the_current_stack_runs_all_but_the_card_only_tests():
    """``make test STACK=current`` is pytest in .venv-current without the card_only tests (and this
    file's, run by the card suite), and the whole suite collects there (no module imports Petastorm or
    Horovod at import time)."""
    env = _without_pyspark_python()
    subprocess.run(["make", "install", "STACK=current"], cwd=ROOT, check=True, capture_output=True,
                   timeout=1800, env=env)
    dry = subprocess.run(["make", "-n", "--no-print-directory", "test", "STACK=current"], cwd=ROOT,
                         capture_output=True, text=True, check=True, env=env)
    markers = "not benchmark and not mutation and not cluster and not card_only and not stack_independent"
    assert dry.stdout.strip().splitlines()[-1] == f'.venv-current/bin/python -m pytest -q -m "{markers}" --durations=20'
    assert "airflow_venv.sh .venv-airflow3 3" in dry.stdout  # the DAG on Airflow 3 there
    everything = _collected(PYTHON, "-m", "not benchmark and not mutation and not cluster")
    run = _collected(PYTHON, "-m", markers)
    assert everything - run == CARD_ONLY | STACK_INDEPENDENT
    # twin: the card stack's make test runs them
    card = subprocess.run(["make", "-n", "--no-print-directory", "test"], cwd=ROOT, capture_output=True, text=True,
                          check=True, env=env)
    assert "card_only" not in card.stdout.strip().splitlines()[-1]
