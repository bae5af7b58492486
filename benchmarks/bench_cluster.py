"""Benchmark: one night per stage on local[2] (embedded Derby) vs the 2-worker standalone cluster
(PostgreSQL metastore) on the same synthetic data, and JDBC readers polling the Thrift Server while
the cluster publishes the next night twice (new partition, then a re-run that swaps its location).

Needs the platform: `make platform-up` first. Each deployment gets a fresh database and storage
root under --work, so nothing published before is touched.

    .venv/bin/python -m benchmarks.bench_cluster [--set synthetic.events_per_day=5000 ...]

Writes benchmarks/results/cluster.json and cluster.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.jdbc_poll import nights_query, polling, summary
from recsys_spark.config import load_config
from recsys_spark.platform import Platform

ROOT = Path(__file__).resolve().parent.parent
RECSYS = Path(sys.executable).parent / "recsys"
RESULTS = ROOT / "benchmarks" / "results"
D = "2026-11-26"
NEXT = (dt.date.fromisoformat(D) + dt.timedelta(days=1)).isoformat()
STAGES = ["events", "build_sequences", "train", "evaluate", "gate", "score"]


def recsys(command: str, *args: str, conf: str, settings: list[str], log: Path) -> float:
    argv = [str(RECSYS), command, *args, "--conf", conf, *[a for s in settings for a in ("--set", s)]]
    started = time.monotonic()
    with open(log, "a") as out:
        code = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"recsys {command} --conf {conf} exited {code}; see {log}")
    return time.monotonic() - started


def night(conf: str, work: Path, extra: list[str]) -> tuple[dict, list[str]]:
    root = work / conf
    settings = [f"storage.database=bench_{uuid.uuid4().hex[:8]}", f"storage.root={root / 'var'}",
                f"spark.warehouse_dir={root / 'warehouse'}", *extra]
    if conf == "local":
        settings += [f"spark.metastore_dir={root / 'metastore'}", "spark.master=local[2]"]
    wall = recsys("nightly", "--ds", D, conf=conf, settings=settings, log=work / f"{conf}.log")
    manifest = json.loads((root / "var" / "runs" / f"ds={D}" / "manifest.json").read_text())
    stages = {s["name"]: s["seconds"] for s in manifest["stages"]}
    print(f"{conf}: {wall:.1f}s {stages}", flush=True)
    return {"wall_s": round(wall, 1), "stages_s": stages,
            "users": manifest["stages"][-1]["details"]["rows"]}, settings


def poll_during_publish(settings: list[str], work: Path, n_night: int) -> dict:
    db = next(s.split("=", 1)[1] for s in settings if s.startswith("storage.database="))
    log = work / "next.log"
    recsys("generate-events", "--ds", NEXT, "--days", "1", conf="standalone", settings=settings, log=log)
    recsys("build-sequences", "--ds", NEXT, conf="standalone", settings=settings, log=log)
    with polling("jdbc:hive2://127.0.0.1:10000", nights_query(db, D), work) as observations:
        publishes = [round(recsys("score", "--ds", NEXT, conf="standalone", settings=settings, log=log), 1)
                     for _ in range(2)]
    complete = [o for o in observations if len(o.get("rows", [])) == 2]
    n_next = int(complete[-1]["rows"][1][1]) if complete else -1
    return {**summary(observations, {D: n_night, NEXT: n_next}), "publish_s": publishes, "next_night_users": n_next}


def markdown(result: dict) -> str:
    local, cluster = result["local"], result["standalone"]
    lines = ["| stage | local[2] + Derby (s) | standalone 2 workers + PostgreSQL (s) | standalone / local |",
             "|---|---|---|---|"]
    for stage in STAGES:
        a, b = local["stages_s"][stage], cluster["stages_s"][stage]
        lines.append(f"| {stage} | {a:.1f} | {b:.1f} | {b / a:.2f}x |" if a else f"| {stage} | {a:.1f} | {b:.1f} | |")
    lines.append(f"| whole night (process wall) | {local['wall_s']:.1f} | {cluster['wall_s']:.1f} | "
                 f"{cluster['wall_s'] / local['wall_s']:.2f}x |")
    poll = result["readers_during_publish"]
    lines += ["", "| JDBC reader during two publishes | value |", "|---|---|",
              f"| queries issued | {poll['queries']} |", f"| errors | {poll['errors']} |",
              f"| partial views | {poll['partial_views']} |", f"| poll duration (s) | {poll['seconds']:.1f} |",
              f"| publish wall time (s) | {', '.join(map(str, poll['publish_s']))} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config for both runs")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    args = parser.parse_args(argv)
    platform = Platform(load_config("standalone"))
    if not all(platform.running(part) for part in platform.parts()):
        raise SystemExit("the platform is not running: make platform-up")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"ds": D, "overrides": args.overrides, "machine": "2 cores, 24 GiB",
                    "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    result["local"], _ = night("local", work, args.overrides)
    result["standalone"], settings = night("standalone", work, args.overrides)
    result["readers_during_publish"] = poll_during_publish(settings, work, result["standalone"]["users"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
