"""The nightly on the platform: every stage on the standalone cluster (Horovod ranks as Spark tasks on
the two workers), the same rows as the embedded deployment, JDBC readers during a publish, and the
metastore password in no log.

One small night D runs under `--conf standalone` (PostgreSQL metastore) and, in a second process,
under `--conf local` (embedded Derby) from the same seeds; then night D+1 is built and published
twice on the cluster while a JDBC client polls the Thrift Server and a second Spark job reads the
metastore.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.jdbc_poll import nights_query, partial_views, polling
from tests.cluster.conftest import ROOT, recsys

D, NEXT = "2026-11-26", "2026-11-27"


@pytest.fixture(scope="module")
def nights(platform, cluster_world, tmp_path_factory):
    """Night D on both deployments, each dumped (recommendations + offline_metrics) as JSON."""
    root, settings = cluster_world
    local_root = tmp_path_factory.mktemp("local")
    local = [*settings[3:], f"storage.root={local_root / 'var'}", f"spark.warehouse_dir={local_root / 'warehouse'}",
             f"spark.metastore_dir={local_root / 'metastore'}", "storage.database=recsys",
             "spark.master=local[2]"]
    runs = {}
    for name, conf, run_settings in (("standalone", "standalone", settings), ("local", "local", local)):
        log = root / f"nightly-{name}.log"
        started = time.monotonic()
        recsys("nightly", "--ds", D, conf=conf, settings=run_settings, log=log)
        runs[name] = {"log": log, "seconds": time.monotonic() - started, "settings": run_settings,
                      "tables": dump(conf, run_settings, root / f"dump-{name}.log")}
    return runs


def dump(conf: str, settings: list[str], log: Path) -> dict:
    argv = [sys.executable, str(ROOT / "tests" / "scripts" / "dump_night.py"), D, "--conf", conf]
    for setting in settings:
        argv += ["--set", setting]
    with open(log, "w") as err:
        done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    assert done.returncode == 0, log.read_text()[-4000:]
    return json.loads(done.stdout)


def test_the_night_equals_the_embedded_deployments_rows(nights):
    standalone, local = nights["standalone"]["tables"], nights["local"]["tables"]
    assert len(standalone["recommendations"]) > 100 and len(standalone["offline_metrics"]) > 20
    assert standalone["recommendations"] == local["recommendations"]
    assert standalone["offline_metrics"] == local["offline_metrics"]


def test_a_changed_row_would_be_caught(nights):
    local = json.loads(json.dumps(nights["local"]["tables"]))
    local["recommendations"][0][4][0][2] += 1e-6
    assert nights["standalone"]["tables"]["recommendations"] != local["recommendations"]


def test_stages_ran_on_the_cluster_executors(nights, platform):
    log = nights["standalone"]["log"].read_text()
    assert "master=spark://127.0.0.1:7077" in log and "metastore=postgres" in log
    # Horovod's ranks and the scoring tasks ran as executors of both workers.
    for i in (1, 2):
        work = platform.root / f"spark-worker-{i}"
        assert any(work.glob("app-*/*/stderr")), f"worker {i} ran no executor"


def beeline(url: str, sql: str) -> subprocess.CompletedProcess:
    spark_home = Path(sys.executable).parents[1] / "lib" / "python3.11" / "site-packages" / "pyspark"
    return subprocess.run([str(spark_home / "bin" / "beeline"), "-u", url, "--silent=true",
                           "--outputformat=csv2", "-e", sql], capture_output=True, text=True, timeout=300)


def test_beeline_reads_the_night_over_jdbc(nights):
    db = next(s.split("=", 1)[1] for s in nights["standalone"]["settings"] if s.startswith("storage.database="))
    done = beeline("jdbc:hive2://127.0.0.1:10000",
                   f"SELECT count(*) AS users FROM {db}.recommendations WHERE ds = '{D}'")
    assert done.returncode == 0, done.stderr[-3000:]
    # csv2 output: a header and the value, after beeline's connection prompt line.
    assert done.stdout.split()[-2:] == ["users", str(len(nights["standalone"]["tables"]["recommendations"]))]


@pytest.fixture(scope="module")
def publish_under_readers(nights, cluster_world):
    """Night D+1 built, then published twice (new partition, then SET LOCATION) while a JDBC client
    polls the Thrift Server and a second Spark job reads the metastore."""
    root, settings = cluster_world
    db = next(s.split("=", 1)[1] for s in settings if s.startswith("storage.database="))
    log = root / "next-night.log"
    recsys("generate-events", "--ds", NEXT, "--days", "1", conf="standalone", settings=settings, log=log)
    recsys("build-sequences", "--ds", NEXT, conf="standalone", settings=settings, log=log)
    with polling("jdbc:hive2://127.0.0.1:10000", nights_query(db, D), root) as observations:
        # Its own local master: the score job holds both workers' cores; the point is the shared metastore.
        second_job = subprocess.Popen(
            [str(Path(sys.executable).parent / "recsys"), "check-input", "--ds", D, "--conf", "standalone",
             *[a for s in [*settings, "spark.master=local[1]"] for a in ("--set", s)]], cwd=ROOT,
            stdout=open(root / "second-job.log", "w"), stderr=subprocess.STDOUT)
        recsys("score", "--ds", NEXT, conf="standalone", settings=settings, log=log)
        recsys("score", "--ds", NEXT, conf="standalone", settings=settings, log=log)
        second_rc = second_job.wait(timeout=600)
    return {"observations": observations, "second_job_rc": second_rc,
            "second_job_log": (root / "second-job.log").read_text(), "log": log.read_text()}


def test_readers_see_the_old_or_the_new_night_never_a_partial_one(publish_under_readers, nights):
    observations = publish_under_readers["observations"]
    errors = [o for o in observations if "error" in o]
    assert errors == []
    n_night = len(nights["standalone"]["tables"]["recommendations"])
    published = [o for o in observations if len(o["rows"]) == 2]
    assert published, "the poll never saw night D+1"
    n_next = int(published[-1]["rows"][1][1])
    assert partial_views(observations, {D: n_night, NEXT: n_next}) == []
    before = [o for o in observations if [r[0] for r in o["rows"]] == [D]]
    assert before and before[0]["t"] < published[0]["t"], "no poll before the publish"
    assert len(observations) >= 20


def test_the_partial_view_check_catches_a_half_written_night():
    observations = [{"t": 0, "rows": [["d", "10", "10", "d"]]}, {"t": 1, "rows": [["d", "10", "10", "d"],
                                                                                  ["e", "4", "4", "e"]]}]
    assert partial_views(observations, {"d": 10, "e": 8}) == [observations[1]]


def test_a_second_spark_job_reads_the_metastore_meanwhile(publish_under_readers):
    assert publish_under_readers["second_job_rc"] == 0, publish_under_readers["second_job_log"][-3000:]


def test_the_metastore_password_is_in_no_log(publish_under_readers, nights, platform, cluster_world):
    password = platform.metastore.password()
    root, _ = cluster_world
    logs = [*platform.root.glob("logs/*"), *platform.root.glob("spark-worker-*/app-*/*/std*"),
            platform.root / "postgres" / "server.log", *root.rglob("*.log"), *root.rglob("*.yaml"),
            *root.rglob("*.json")]
    assert len(logs) > 10
    leaks = [str(p) for p in logs if p.is_file() and password in p.read_text(errors="replace")]
    assert leaks == []
    tracked = subprocess.run(["git", "grep", "-l", "-F", password], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout == ""


def test_a_healthy_cluster_night_prints_no_traceback(nights, publish_under_readers):
    for text in (nights["standalone"]["log"].read_text(), publish_under_readers["log"]):
        assert "Traceback" not in text
