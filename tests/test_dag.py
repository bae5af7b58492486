"""The Airflow DAG, checked by Airflow itself: parsed with DagBag, shape and retries, templates rendered
for a logical date, gate/sensor exit codes through the real SparkSubmitHook. Airflow's pins conflict
with the job stack, so this runs tests/scripts/check_dag.py in .venv-airflow (scripts/airflow_venv.sh,
a no-op when the venv already matches constraints-airflow.txt)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("RECSYS_AIRFLOW_VENV", ROOT / ".venv-airflow"))


def test_dag_loads_renders_and_maps_exit_codes(tmp_path):
    subprocess.run(["bash", str(ROOT / "scripts" / "airflow_venv.sh"), str(VENV)], check=True,
                   env={**os.environ, "PYTHON": sys.executable}, timeout=1200)
    result = subprocess.run([str(VENV / "bin" / "python"), str(ROOT / "tests" / "scripts" / "check_dag.py"),
                             str(ROOT), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("DAG OK"), \
        result.stdout[-3000:] + result.stderr[-5000:]
    assert "train: --ds 2026-11-26 " in result.stdout
