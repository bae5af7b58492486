"""The packaged jobs run under the real spark-submit, importing recsys_spark from the --py-files zip.

The project's .venv has an editable install whose import hook would quietly serve the source tree
(and hide a module missing from the zip), so the jobs run under a bare interpreter: a fresh venv
without pip whose only addition is a .pth naming .venv's site-packages directory. A plain path line
in a .pth is not itself scanned for .pth files, so the pinned stack (pyspark, torch, pyarrow) is
importable but the editable hook never loads: recsys_spark can only come from the zip. The test
checks that first, then that each job logged ``recsys_spark <version> loaded from .../recsys_spark.zip``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import recsys_spark

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
DS = "2026-11-26"
SMALL = ["synthetic.events_per_day=800", "synthetic.n_users=100", "synthetic.n_items=80",
         "sequences.window_length=5", "sequences.stride=5", "sequences.num_negatives=3"]


def package(dist: Path) -> Path:
    """What ``make dist`` ships for spark-submit: the zip, jobs/ and conf/ (the wheel is not used)."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "package_zip.py"), str(dist / "recsys_spark.zip")],
                   check=True, capture_output=True)
    shutil.copytree(ROOT / "jobs", dist / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", dist / "conf")
    return dist


def bare_python(where: Path) -> Path:
    """A venv that sees the pinned stack but not the project's editable install."""
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip",
                    str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "recsys_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_packaged_jobs_run_under_spark_submit_from_the_zip(tmp_path):
    dist = package(tmp_path / "dist")
    python = bare_python(tmp_path / "bare")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    env.update(PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python), PYTHONNOUSERSITE="1")

    probe = subprocess.run([str(python), "-c", "import pyspark, torch, pyarrow; import recsys_spark"],
                           cwd=run_dir, env=env, capture_output=True, text=True)
    assert "No module named 'recsys_spark'" in probe.stderr, probe.stderr  # the stack only, not the project

    settings = [f"spark.warehouse_dir={tmp_path / 'warehouse'}", f"spark.metastore_dir={tmp_path / 'metastore'}",
                f"storage.root={tmp_path / 'var'}", *SMALL]

    def submit(job: str, *args: str) -> subprocess.CompletedProcess:
        command = [str(SPARK_SUBMIT), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
                   "--conf", f"spark.pyspark.python={python}", "--conf", f"spark.pyspark.driver.python={python}",
                   "--py-files", str(dist / "recsys_spark.zip"), str(dist / "jobs" / f"{job}.py"),
                   "--conf", str(dist / "conf" / "local.yaml"), *args]
        for item in settings:
            command += ["--set", item]
        # PythonRunner merges the job's stderr (our log) into spark-submit's stdout: read one stream.
        result = subprocess.run(command, cwd=run_dir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=400)
        loaded = f"recsys_spark {recsys_spark.__version__} loaded from {dist / 'recsys_spark.zip'}"
        assert loaded in result.stdout, f"{job} did not import the zip:\n{result.stdout[-4000:]}"
        return result

    missing = submit("check_input", "--ds", DS)
    assert missing.returncode == 75, missing.stdout[-3000:]  # EX_TEMPFAIL reaches the caller

    generated = submit("generate_events", "--ds", DS, "--days", "3")
    assert generated.returncode == 0, generated.stdout[-4000:]

    built = submit("build_sequences", "--ds", DS)
    assert built.returncode == 0, built.stdout[-4000:]
    assert f"built {DS}:" in built.stdout
    assert (tmp_path / "var").exists() and any((tmp_path / "var").rglob("*.parquet"))

    present = submit("check_input", "--ds", DS)
    assert present.returncode == 0, present.stdout[-3000:]
    assert f"ds={DS} has " in present.stdout
