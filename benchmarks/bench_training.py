"""Benchmark: LSTM training throughput (target positions/second) and time per epoch on real data.

For each dataset the real jobs run in a fresh workspace: import-events -> build-sequences -> train,
three times on the same examples: 1 process x 1 thread, 1 process x 2 threads, and 2 Horovod
processes x 1 thread (on local Spark). Throughput is the median over epochs of the trainer's own
per-epoch count (training steps only, validation excluded). Writes benchmarks/results/training.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "datasets"
RECSYS = Path(sys.executable).parent / "recsys"

DATASETS = {
    # name: (format, path, build-sequences overrides)
    "yoochoose-clicks-100k": ("gru4rec", DATA / "yoochoose-clicks-100k" / "yoochoose-clicks-100k_train_full.txt",
                              ["sequences.window_length=20", "sequences.stride=20", "sequences.min_user_support=2",
                               "sequences.min_item_support=1", "sequences.collapse_repeats=false"]),
    "movielens-100k": ("movielens", DATA / "movielens-100k" / "u.data",
                       ["sequences.window_length=50", "sequences.stride=50", "sequences.min_item_support=1",
                        "sequences.min_user_support=3"]),
}
COMMON = ["sequences.lookback_days=100000", "sequences.max_rejected_share=0.01", "sequences.num_negatives=64",
          "sequences.max_history=200", "spark.conf={spark.driver.memory: 4g}"]
SETUPS = {  # name: (backend, num_proc, threads)
    "1proc_x_1thread": ("single", 1, 1),
    "1proc_x_2threads": ("single", 1, 2),
    "horovod_2proc_x_1thread": ("horovod", 2, 1),
}


def _recsys(args: list[str], cwd: Path) -> None:
    result = subprocess.run([str(RECSYS), *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"recsys {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def _sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def run_dataset(name: str, epochs: int, workdir: Path) -> dict:
    fmt, path, overrides = DATASETS[name]
    _recsys(["import-events", "--format", fmt, "--path", str(path), "--log-level", "WARNING", *_sets(COMMON)], workdir)
    nights = sorted(p.name.split("=")[1] for p in (workdir / "var/warehouse/recsys.db/events").glob("ds=*"))
    ds = nights[-1]
    _recsys(["build-sequences", "--ds", ds, "--log-level", "WARNING", *_sets(COMMON + overrides)], workdir)
    meta = json.loads((workdir / "var" / "datasets" / f"ds={ds}" / "metadata.json").read_text())
    out = {"ds": ds, "items": meta["num_items"] - 1, "training_positions": meta["num_training_positions"]}
    for setup, (backend, procs, threads) in SETUPS.items():
        version = f"bench-{setup}"
        train = [f"train.backend={backend}", f"train.num_proc={procs}", f"train.threads_per_proc={threads}",
                 f"train.epochs={epochs}", "train.patience=100", "train.embedding_dim=64", "train.hidden_size=128",
                 "train.loss=softmax", "train.batch_size=64"]
        _recsys(["train", "--ds", ds, "--model-version", version, "--log-level", "WARNING",
                 *_sets(COMMON + overrides + train)], workdir)
        metrics = json.loads((workdir / "var" / "models" / version / "metrics.json").read_text())
        history = metrics["history"]
        out[setup] = {
            "positions_per_second": round(statistics.median(h["positions_per_second"] for h in history)),
            "seconds_per_epoch": round(statistics.median(h["train_seconds"] for h in history), 1),
            "validation_ndcg@10": round(max(h["validation"]["ndcg@10"] for h in history), 4),
            "validation_hr@10": round(max(h["validation"]["hr@10"] for h in history), 4)}
        print(name, setup, out[setup], flush=True)
    single = out["1proc_x_1thread"]["positions_per_second"]
    out["horovod_scaling_vs_ideal"] = round(out["horovod_2proc_x_1thread"]["positions_per_second"] / (2 * single), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training.json"))
    args = parser.parse_args()
    results = {}
    for name in args.datasets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run_dataset(name, args.epochs, Path(tmp))
    Path(args.out).write_text(json.dumps({"machine": "2 cores", "epochs": args.epochs, "results": results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
