"""A JDBC reader that polls one query through the Spark Thrift Server while a job publishes.

It is a real HiveServer2 JDBC client (the ``hive-jdbc`` driver that ships in pyspark's jars, in a JVM
started by JPype), so it sees exactly what beeline, a BI tool or any JDBC/ODBC user would see.

    python -m benchmarks.jdbc_poll --url jdbc:hive2://127.0.0.1:10000/default \\
        --query "SELECT ds, count(*), count(DISTINCT user_id) FROM recsys.recommendations GROUP BY ds" \\
        --out polls.json --stop-file stop

It writes ``<out>.ready`` after its first answer, polls until ``--stop-file`` exists (or
``--max-seconds``), then writes every observation (time, rows or error) to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyspark

JARS = Path(pyspark.__file__).resolve().parent / "jars"
ROOT = Path(__file__).resolve().parent.parent


def connect(url: str, user: str = "recsys"):
    import jpype
    import jpype.imports  # noqa: F401 - enables `from java.x import Y`

    if not jpype.isJVMStarted():
        jpype.startJVM(classpath=[str(JARS / "*")], convertStrings=True)
    from java.sql import DriverManager
    from java.util import Properties

    jpype.JClass("org.apache.hive.jdbc.HiveDriver")
    props = Properties()
    props.setProperty("user", user)
    return DriverManager.getConnection(url, props)


def query(connection, sql: str) -> list[list]:
    statement = connection.createStatement()
    try:
        result = statement.executeQuery(sql)
        width = result.getMetaData().getColumnCount()
        rows = []
        while result.next():
            rows.append([result.getString(i + 1) for i in range(width)])
        return rows
    finally:
        statement.close()


def poll(url: str, sql: str, stop_file: Path, out: Path, interval_s: float, max_seconds: float) -> list[dict]:
    connection = connect(url)
    observations: list[dict] = []
    start = time.monotonic()
    while not stop_file.exists() and time.monotonic() - start < max_seconds:
        t = time.monotonic() - start
        try:
            observations.append({"t": round(t, 3), "rows": query(connection, sql)})
        except Exception as exc:  # noqa: BLE001 - every failed read is an observation to count
            observations.append({"t": round(t, 3), "error": str(exc).splitlines()[0][:500]})
        if len(observations) == 1:
            out.with_name(out.name + ".ready").write_text("ready")
        time.sleep(interval_s)
    connection.close()
    return observations


@contextmanager
def polling(url: str, sql: str, work: Path, interval_s: float = 0.1, start_timeout_s: float = 300) -> Iterator[list[dict]]:
    """Poll ``sql`` from a separate process (its own JVM) for as long as the ``with`` body runs; the
    observations fill the yielded list when the body ends."""
    out, stop, log = work / "polls.json", work / "polls.stop", work / "poller.log"
    poller = subprocess.Popen([sys.executable, "-m", "benchmarks.jdbc_poll", "--url", url, "--query", sql,
                               "--out", str(out), "--stop-file", str(stop), "--interval-s", str(interval_s)],
                              cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + start_timeout_s
    while not out.with_name(out.name + ".ready").exists():
        if poller.poll() is not None or time.monotonic() > deadline:
            poller.kill()
            raise RuntimeError(f"the JDBC poller did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    observations: list[dict] = []
    try:
        yield observations
        time.sleep(2)  # a few polls of the final state
    finally:
        stop.write_text("stop")
        if poller.wait(timeout=120) != 0:
            raise RuntimeError(f"the JDBC poller failed:\n{log.read_text()[-3000:]}")
    observations.extend(json.loads(out.read_text())["observations"])


def nights_query(database: str, since: str) -> str:
    """The reader's poll: each published night of ``recommendations`` from ``since`` on, with its row
    and distinct-user counts (what :func:`partial_views` checks)."""
    return (f"SELECT ds, count(*), count(DISTINCT user_id), min(ds) FROM {database}.recommendations "
            f"WHERE ds >= '{since}' GROUP BY ds ORDER BY ds")


def partial_views(observations: list[dict], expected: dict[str, int]) -> list[dict]:
    """Observations of a ``SELECT ds, count(*), count(DISTINCT user_id) ... GROUP BY ds`` poll that show
    a night with other than its complete row count, or a user twice."""
    return [obs for obs in observations
            if any(int(row[1]) != expected.get(row[0]) or int(row[2]) != int(row[1]) for row in obs.get("rows", []))]


def summary(observations: list[dict], expected: dict[str, int]) -> dict:
    return {"queries": len(observations), "errors": sum("error" in o for o in observations),
            "partial_views": len(partial_views(observations, expected)),
            "seconds": observations[-1]["t"] if observations else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--interval-s", type=float, default=0.2)
    parser.add_argument("--max-seconds", type=float, default=1800)
    args = parser.parse_args(argv)
    observations = poll(args.url, args.query, args.stop_file, args.out, args.interval_s, args.max_seconds)
    args.out.write_text(json.dumps({"query": args.query, "observations": observations}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
