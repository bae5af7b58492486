"""Checks of dags/recsys_nightly.py with Airflow's own machinery; runs in .venv-airflow (Airflow
cannot share the job stack's virtualenv), driven by tests/test_dag.py. Prints 'DAG OK' at the end.

usage: check_dag.py REPO_ROOT WORK_DIR
No metadata database is needed: DagBag parses, templates render against a context built from the
logical date, and the gate/sensor exit-code handling runs against a fake spark-submit on PATH.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import stat
import sys
from pathlib import Path

ROOT, WORK = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
DIST = "/opt/recsys-test/dist"
os.environ.update({
    "AIRFLOW_HOME": str(WORK / "airflow_home"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "RECSYS_DIST": DIST,
    "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
})

import airflow  # noqa: E402
import pendulum  # noqa: E402
from airflow.models import DagBag  # noqa: E402

try:  # the same fallbacks as the DAG's: Airflow 3 first, then 2
    from airflow.sdk import TriggerRule  # noqa: E402
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException  # noqa: E402
except ImportError:
    from airflow.exceptions import AirflowException, AirflowSkipException  # noqa: E402
    from airflow.utils.trigger_rule import TriggerRule  # noqa: E402

DS = "2026-11-26"
STAGES = ["build_sequences", "train", "evaluate", "gate", "score", "similar_items"]
CHAIN = ["wait_for_events"] + STAGES


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# 1. Airflow parses the file with no import errors, and no warning (a deprecated import) from it.
print(f"airflow {airflow.__version__}")
bag = DagBag(dag_folder=str(ROOT / "dags"))  # examples: off by AIRFLOW__CORE__LOAD_EXAMPLES
check(not bag.import_errors, f"import errors: {bag.import_errors}")
dag_file = str(ROOT / "dags" / "recsys_nightly.py")
own = [w for ws in bag.captured_warnings.values() for w in ws if w.startswith(dag_file + ":")]
check(not own, f"warnings from the DAG file: {own}")
dag = bag.dags.get("recsys_nightly")
check(dag is not None, f"no recsys_nightly in {list(bag.dags)}")

# 2. Shape: tasks, edges, scheduling knobs.
check(sorted(dag.task_ids) == sorted(CHAIN), f"task ids {dag.task_ids}")
for upstream, downstream in zip(CHAIN, CHAIN[1:]):
    check(dag.get_task(downstream).upstream_task_ids == {upstream},
          f"{downstream} upstream {dag.get_task(downstream).upstream_task_ids}, want {{{upstream}}}")
check(dag.catchup is True and dag.max_active_runs == 1, "catchup=True, max_active_runs=1")
check(dag.start_date == pendulum.datetime(2026, 11, 1, tz="UTC"), f"start_date {dag.start_date}")
for task in dag.tasks:
    check(task.retries >= 2 and task.retry_exponential_backoff and task.max_retry_delay,
          f"{task.task_id}: retries with exponential back-off")
check({t.task_id for t in dag.tasks if t.depends_on_past} == {"build_sequences", "gate"},
      "depends_on_past on build_sequences and gate only")
check(dag.get_task("score").trigger_rule == TriggerRule.NONE_FAILED, "score runs when gate is skipped")
check(dag.get_task("similar_items").trigger_rule == TriggerRule.ALL_SUCCESS, "similar_items needs score")
check(dag.get_task("gate").trigger_rule == TriggerRule.ALL_SUCCESS, "gate needs evaluate")
sensor = dag.get_task("wait_for_events")
check(sensor.mode == "reschedule" and sensor.timeout > 0, "sensor reschedules and times out")
for name in STAGES:
    task = dag.get_task(name)
    check(task.application == f"{DIST}/jobs/{name}.py", f"{name}: application {task.application}")
    check(task.py_files == f"{DIST}/recsys_spark.zip", f"{name}: py_files {task.py_files}")

# 3. No wall clock in the source.
source = (ROOT / "dags" / "recsys_nightly.py").read_text()
for pattern in (r"\bnow\(", r"utcnow", r"today\(", r"time\.time", r"\bts\b", r"macros\.datetime"):
    check(not re.search(pattern, source), f"wall-clock pattern {pattern!r} in the DAG source")


# 4. Templates render from the logical date alone, identically every time.
def context_for(ds: str, task) -> dict:
    logical = pendulum.parse(ds)
    return {"ds": ds, "ds_nodash": ds.replace("-", ""), "logical_date": logical,
            "data_interval_start": logical, "data_interval_end": logical.add(days=1),
            "dag": dag, "task": task, "params": {}, "run_id": f"scheduled__{ds}T00:00:00+00:00"}


def rendered(task, ds: str):
    copy_ = copy.deepcopy(task)
    copy_.render_template_fields(context_for(ds, copy_))
    return copy_


today = dt.date.today().isoformat()
for name in CHAIN:
    task = rendered(dag.get_task(name), DS)
    values = [getattr(task, field) for field in task.template_fields]
    text = json.dumps(values, default=str)
    check("{{" not in text, f"{name}: unrendered template in {text}")
    dates = set(re.findall(r"\d{4}-\d{2}-\d{2}", text))
    check(dates == {DS}, f"{name}: dates {dates} in rendered fields, want only {DS}")
    if today != DS:
        check(today not in text, f"{name}: today's date in {text}")
    check(json.dumps([getattr(rendered(dag.get_task(name), DS), f) for f in task.template_fields],
                     default=str) == text, f"{name}: rendering is not deterministic")
    if name == "wait_for_events":
        check(task.op_kwargs == {"ds": DS}, f"sensor op_kwargs {task.op_kwargs}")
        continue
    args = task.application_args
    check(args[:2] == ["--ds", DS], f"{name}: application_args {args}")
    check(task.name == f"recsys-{name}-{DS}", f"{name}: name {task.name}")
    if name in ("train", "evaluate", "gate"):
        check(args[args.index("--model-version") + 1] == f"{DS}-airflow", f"{name}: {args}")
    print(f"{name}: {' '.join(args)}")

# 5. Exit codes through the real SparkSubmitHook with a fake spark-submit on PATH.
bin_dir = WORK / "bin"
bin_dir.mkdir(parents=True, exist_ok=True)
fake = bin_dir / "spark-submit"
fake.write_text('#!/bin/sh\necho "$@" > "$FAKE_SPARK_ARGS"\nexit "$FAKE_SPARK_EXIT"\n')
fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
os.environ["FAKE_SPARK_ARGS"] = str(WORK / "spark_args.txt")


def run_with_exit(task_id: str, code: int):
    os.environ["FAKE_SPARK_EXIT"] = str(code)
    task = rendered(dag.get_task(task_id), DS)
    if task_id == "wait_for_events":
        result = task.poke(context_for(DS, task))
        return getattr(result, "is_done", result)  # PokeReturnValue or bool
    return task.execute(context_for(DS, task))


run_with_exit("gate", 0)
submitted = (WORK / "spark_args.txt").read_text().split()
check(submitted[-7:] == [f"{DIST}/jobs/gate.py", "--ds", DS, "--conf", f"{DIST}/conf/cluster.yaml",
                         "--model-version", f"{DS}-airflow"], f"gate command {submitted}")
check(submitted[submitted.index("--py-files") + 1] == f"{DIST}/recsys_spark.zip", f"{submitted}")
check(submitted[submitted.index("--deploy-mode") + 1] == "client", f"{submitted}")
try:
    run_with_exit("gate", 4)
    raise AssertionError("gate exit 4 did not skip")
except AirflowSkipException:
    pass
for code in (1, 3):
    try:
        run_with_exit("gate", code)
        raise AssertionError(f"gate exit {code} did not fail")
    except AirflowSkipException:
        raise AssertionError(f"gate exit {code} was taken for a refusal")
    except AirflowException:
        pass
check(run_with_exit("wait_for_events", 0) is True, "sensor: exit 0 means ready")
submitted = (WORK / "spark_args.txt").read_text().split()
check(f"{DIST}/jobs/check_input.py" in submitted and DS in submitted, f"sensor command {submitted}")
check(run_with_exit("wait_for_events", 75) is False, "sensor: exit 75 means not ready yet")
try:
    run_with_exit("wait_for_events", 1)
    raise AssertionError("sensor exit 1 did not fail")
except AirflowException:
    pass
print("DAG OK")
