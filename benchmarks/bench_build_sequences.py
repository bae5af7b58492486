"""Benchmark: build_sequences end to end at 1M and 10M synthetic events, against pandas at 1M (and 10M).

Run with `make benchmark-sequences` (or python benchmarks/bench_build_sequences.py). Each Spark run is a
fresh `recsys build-sequences` process over a fresh warehouse; peak memory is sampled every 0.2 s:
the Python driver process (grows only if data is collected to the driver) and the Spark JVM (local
mode: driver and executors share it, bounded by spark.driver.memory). Writes
benchmarks/results/build_sequences.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
RECSYS = Path(sys.executable).parent / "recsys"
DS = "2026-11-26"
DAYS = 10


def _config(size: int) -> list[str]:
    return ["--set", f"synthetic.events_per_day={size // DAYS}", "--set", "synthetic.n_users=100000",
            "--set", "synthetic.n_items=20000", "--set", "synthetic.new_items_per_day=0",
            "--set", "synthetic.new_users_per_day=0", "--set", "synthetic.partitions=8",
            "--set", "spark.conf={spark.driver.memory: 8g, spark.sql.shuffle.partitions: '16'}"]


class PeakMemory:
    """Samples the RSS of a process tree: the Python root and, separately, its Java children."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.python_peak = self.jvm_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.python_peak = max(self.python_peak, self.root.memory_info().rss)
                jvm = sum(c.memory_info().rss for c in self.root.children(recursive=True) if "java" in c.name())
                self.jvm_peak = max(self.jvm_peak, jvm)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _run(cmd: list[str], cwd: Path) -> tuple[float, PeakMemory]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with PeakMemory(proc.pid) as peak:
        _, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return time.perf_counter() - start, peak


def spark_run(size: int, workdir: Path) -> dict:
    conf = _config(size)
    _run([str(RECSYS), "generate-events", "--ds", DS, "--days", str(DAYS), *conf], workdir)
    seconds, peak = _run([str(RECSYS), "build-sequences", "--ds", DS, *conf], workdir)
    quality = json.loads((workdir / "var" / "datasets" / f"ds={DS}" / "quality.json").read_text())
    return {"events": quality["rows_read"], "seconds": round(seconds, 1),
            "events_per_second": round(quality["rows_read"] / seconds),
            "python_driver_peak_mb": round(peak.python_peak / 2**20),
            "jvm_peak_mb": round(peak.jvm_peak / 2**20),
            "users": quality["users"], "items": quality["items"],
            "training_examples": quality["training_examples"]}


PANDAS_SNIPPET = """
import json, sys, time, pandas as pd, pyarrow.parquet as pq
sys.path.insert(0, {root!r})
from benchmarks.pandas_reference import build
from recsys_spark.config import load_config
start = time.perf_counter()
events = pq.read_table({path!r}).to_pandas()
out = build(events, {ds!r}, load_config("local").sequences)
out["seconds"] = time.perf_counter() - start
print(json.dumps(out))
"""


def pandas_run(workdir: Path) -> dict:
    events_dir = workdir / "var" / "warehouse" / "recsys.db" / "events"
    code = PANDAS_SNIPPET.format(root=str(ROOT), path=str(events_dir), ds=DS)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(proc.pid) as peak:
        out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"pandas reference failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {"seconds": round(time.perf_counter() - start, 1), "peak_mb": round(peak.python_peak / 2**20),
            "training_examples": result["training_examples"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--pandas-sizes", default="1000000,10000000")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "build_sequences.json"))
    args = parser.parse_args()
    results = {"machine": f"{os.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30)} GiB",
               "spark": {}, "pandas": {}}
    for size in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            results["spark"][str(size)] = spark_run(size, Path(tmp))
            print(f"spark {size}: {results['spark'][str(size)]}", flush=True)
            if str(size) in args.pandas_sizes.split(","):
                results["pandas"][str(size)] = pandas_run(Path(tmp))
                print(f"pandas {size}: {results['pandas'][str(size)]}", flush=True)
    sizes = sorted(results["spark"], key=int)
    if len(sizes) >= 2:
        results["spark_time_ratio_10x"] = round(results["spark"][sizes[-1]]["seconds"]
                                                / results["spark"][sizes[0]]["seconds"], 2)
    for size in results["pandas"]:
        results[f"spark_over_pandas_speed_{size}"] = round(results["pandas"][size]["seconds"]
                                                          / results["spark"][size]["seconds"], 2)
        # Cross-check: both implementations must produce the same number of training windows.
        results[f"same_training_examples_{size}"] = (
            results["pandas"][size]["training_examples"] == results["spark"][size]["training_examples"])
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
