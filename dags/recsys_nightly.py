"""recsys_nightly: the nightly recommender pipeline, one spark-submit task per stage.

    wait_for_events >> build_sequences >> train >> evaluate >> gate >> score >> similar_items

Each task submits the packaged job (``$RECSYS_DIST/jobs/<stage>.py`` with ``--py-files
$RECSYS_DIST/recsys_spark.zip``, i.e. what ``make dist`` builds) for the run's logical date,
``--ds {{ ds }}``. Nothing reads the wall clock: every argument comes from the logical date, so a
retry, a cleared task or a catch-up run of an old night submits exactly the same command.

Scheduling
  * ``catchup=True`` with ``max_active_runs=1``: missed nights are back-filled one at a time, oldest
    first, because each night builds on the previous one (the item vocabulary is appended to, the
    gate compares against the production model the previous night left behind).
  * ``depends_on_past`` on ``build_sequences`` (vocabulary continuity) and ``gate`` (the production
    model is a chain of decisions): night N+1 does not start either until night N's has finished.
    A refused gate is *skipped*, which satisfies ``depends_on_past``; a failed one blocks later
    nights until someone reruns or marks it.
  * Retries with exponential back-off (5 min doubling up to 1 h) for every task. A retried ``train``
    retrains the same candidate version from scratch (no ``--resume``, so a rerun never mixes in
    checkpoints of an older config).
  * ``wait_for_events`` is a PythonSensor in reschedule mode (no worker slot held while waiting) that
    submits ``jobs/check_input.py``: exit 0 = ``recsys.events/ds={{ ds }}`` is there, exit 75 = not
    yet (poke again), anything else = a real error (the sensor fails and retries).

The gate and why scoring still runs when it refuses
  ``jobs/gate.py`` exits 4 when the candidate's offline metrics fall more than the tolerance below
  production's. ``GateSubmitOperator`` turns exit 4 into a *skipped* gate (no retries: a refusal is a
  decision, not a failure), and ``score`` has ``trigger_rule=none_failed``: it runs when the gate
  promoted the candidate (success) *and* when it refused it (skipped), scoring tonight's users with
  whatever is production then. So a refusal keeps recommendations fresh with the current model,
  while a real gate error (crash, metastore down: failed after its retries) leaves ``score``
  upstream_failed and the run red. On the very first night there is no production model yet: the
  gate then compares the candidate with the bootstrap baseline (``recsys_spark.gate``), and if it
  refuses, ``score`` has no model to serve and fails (NoModelError) -- the one refusal that does
  leave the night without recommendations.
  ``similar_items`` follows a successful ``score`` and lists every item's similar items with the same
  production model.

Deployment
  Environment of the scheduler/workers (read when the file is parsed, never per run):
  ``RECSYS_DIST`` (the deployed ``dist/`` directory), ``RECSYS_CONF`` (config file, default
  ``$RECSYS_DIST/conf/cluster.yaml``), ``RECSYS_SPARK_CONN`` (Airflow connection, default
  ``spark_default``: master, queue, spark-binary). Tasks use deploy mode ``client``: the job's exit
  code (4 from the gate, 75 from the input check) only reaches Airflow from a local driver.
  Candidate models are registered as ``<ds>-airflow`` (train ``--model-version``), so evaluate and
  gate can name tonight's candidate without passing data between tasks.
"""
from __future__ import annotations

import os
import re
from datetime import timedelta

import pendulum
from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

# One file for Airflow 2.10 and 3.x (tests/test_dag.py parses it on both). Airflow 3 moved the
# authoring API into airflow.sdk and the standard operators and sensors into
# apache-airflow-providers-standard; its old paths still import there, with deprecation warnings.
try:
    from airflow.sdk import DAG, TriggerRule
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.exceptions import AirflowException, AirflowSkipException
    from airflow.utils.trigger_rule import TriggerRule
try:
    from airflow.providers.standard.sensors.python import PythonSensor
except ImportError:  # Airflow 2 without the standard provider
    from airflow.sensors.python import PythonSensor

DIST = os.environ.get("RECSYS_DIST", "/opt/recsys-spark/dist")
CONF = os.environ.get("RECSYS_CONF", f"{DIST}/conf/cluster.yaml")
SPARK_CONN = os.environ.get("RECSYS_SPARK_CONN", "spark_default")
PY_FILES = f"{DIST}/recsys_spark.zip"
CANDIDATE = "{{ ds }}-airflow"
"""Tonight's candidate model version: a function of the logical date only."""

GATE_REFUSED = 4  # jobs/gate.py REFUSED
INPUT_NOT_READY = 75  # jobs/check_input.py NOT_READY (EX_TEMPFAIL)


def job_args(*extra: str) -> list[str]:
    return ["--ds", "{{ ds }}", "--conf", CONF, *extra]


def spark_exit_code(hook: SparkSubmitHook | None, exc: AirflowException) -> int | None:
    """The spark-submit process's exit code after ``hook.submit`` raised (the hook keeps the
    process; its message is the fallback)."""
    process = getattr(hook, "_submit_sp", None)
    if process is not None and process.returncode is not None:
        return process.returncode
    match = re.search(r"Error code is: (\d+)", str(exc))
    return int(match.group(1)) if match else None


class GateSubmitOperator(SparkSubmitOperator):
    """spark-submit of jobs/gate.py where a refusal (exit 4) is a skip, not a failure, so ``score``
    still runs with the current production model and Airflow does not retry a decision."""

    def execute(self, context):
        try:
            super().execute(context)
        except AirflowException as exc:
            if spark_exit_code(self._hook, exc) == GATE_REFUSED:
                raise AirflowSkipException(
                    "candidate refused by the metric gate; production model unchanged") from exc
            raise


def input_ready(ds: str) -> bool:
    """Sensor poke: submit jobs/check_input.py for ``ds``; True when the partition is there."""
    hook = SparkSubmitHook(conn_id=SPARK_CONN, py_files=PY_FILES, name=f"recsys-check_input-{ds}",
                           application_args=["--ds", ds, "--conf", CONF], deploy_mode="client")
    try:
        hook.submit(f"{DIST}/jobs/check_input.py")
    except AirflowException as exc:
        if spark_exit_code(hook, exc) == INPUT_NOT_READY:
            return False
        raise
    return True


def stage(task_id: str, *extra: str, operator=SparkSubmitOperator, **kwargs) -> SparkSubmitOperator:
    return operator(
        task_id=task_id,
        conn_id=SPARK_CONN,
        application=f"{DIST}/jobs/{task_id}.py",
        py_files=PY_FILES,
        name=f"recsys-{task_id}-{{{{ ds }}}}",
        application_args=job_args(*extra),
        deploy_mode="client",
        **kwargs,
    )


default_args = {
    "owner": "recsys",
    "depends_on_past": False,
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(hours=1),
    "execution_timeout": timedelta(hours=3),
}

with DAG(
    dag_id="recsys_nightly",
    description="events -> sequences -> LSTM -> evaluation -> gate -> recommendations, per night",
    doc_md=__doc__,
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=20),
    default_args=default_args,
    tags=["recsys", "spark"],
) as dag:
    wait_for_events = PythonSensor(
        task_id="wait_for_events",
        python_callable=input_ready,
        op_kwargs={"ds": "{{ ds }}"},
        mode="reschedule",
        poke_interval=timedelta(minutes=10).total_seconds(),
        exponential_backoff=True,
        max_wait=timedelta(hours=1),
        timeout=timedelta(hours=12).total_seconds(),
    )
    build_sequences = stage("build_sequences", depends_on_past=True)
    train = stage("train", "--model-version", CANDIDATE, execution_timeout=timedelta(hours=6))
    evaluate = stage("evaluate", "--model-version", CANDIDATE, "--with-production")
    gate = stage("gate", "--model-version", CANDIDATE, operator=GateSubmitOperator, depends_on_past=True)
    score = stage("score", trigger_rule=TriggerRule.NONE_FAILED)
    similar_items = stage("similar_items")  # the same production model as score, after it

    wait_for_events >> build_sequences >> train >> evaluate >> gate >> score >> similar_items
