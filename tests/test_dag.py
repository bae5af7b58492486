"""The Airflow DAG, checked by Airflow itself: parsed with DagBag, shape and retries, templates rendered
for a logical date, gate/sensor exit codes through the real SparkSubmitHook. Airflow's pins conflict
with the job stack, so this runs tests/scripts/check_dag.py in an Airflow venv (scripts/airflow_venv.sh,
a no-op when the venv already matches its constraints): on the card stack Airflow 2.10.5
(.venv-airflow, constraints-airflow.txt), on the current stack Airflow 3 (.venv-airflow3,
constraints-airflow3.txt). The same DAG file on both."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _stack import CARD

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW, DEFAULT_VENV = ("2.10.5", ".venv-airflow") if CARD else ("3.3.2", ".venv-airflow3")
VENV = Path(os.environ.get("RECSYS_AIRFLOW_VENV", ROOT / DEFAULT_VENV))


def test_dag_loads_renders_and_maps_exit_codes(tmp_path):
    # Airflow's own interpreter: without this suite's PYSPARK_* (session.py sets them for its workers).
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    subprocess.run(["bash", str(ROOT / "scripts" / "airflow_venv.sh"), str(VENV), AIRFLOW.split(".")[0]],
                   check=True, env={**env, "PYTHON": sys.executable}, timeout=1200)
    result = subprocess.run([str(VENV / "bin" / "python"), str(ROOT / "tests" / "scripts" / "check_dag.py"),
                             str(ROOT), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("DAG OK"), \
        result.stdout[-3000:] + result.stderr[-5000:]
    assert f"airflow {AIRFLOW}\n" in result.stdout
    assert "train: --ds 2026-11-26 " in result.stdout
