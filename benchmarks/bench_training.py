"""Benchmark: LSTM training throughput (target positions/second) and time per epoch on real data.

For each dataset the real jobs run in a fresh workspace: import-events -> build-sequences -> train,
on the same examples: 1 process x 1 thread, 1 process x 2 threads, 2 Horovod processes x 1 thread (on
local Spark) and, as the machine's real two-rank ideal, two independent 1 x 1 trainings at the same
time. Throughput is the median over epochs of the trainer's own per-epoch count (training steps only,
validation excluded). Writes benchmarks/results/training.json.

``--catalogue 50000``: the catalogue-scale row instead. A synthetic night with about that many
items, trained with the shipped defaults (``train.loss=auto``: sampled softmax with shared
popularity negatives past ``train.full_softmax_max_items``) and with the full softmax, both as 2
Horovod processes x 1 thread, the same epochs: positions/s and best validation NDCG@10 side by side.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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
    # The reference case: a ~3k-item catalogue with long histories (no padding-bound batches).
    "synthetic-3k": ("synthetic", None, ["sequences.window_length=50", "sequences.stride=50"]),
}
SYNTHETIC = ["synthetic.n_items=3000", "synthetic.n_users=20000", "synthetic.events_per_day=40000",
             "synthetic.new_items_per_day=0", "synthetic.new_users_per_day=0"]
SYNTHETIC_DS, SYNTHETIC_DAYS = "2026-11-26", 10
COMMON = ["sequences.lookback_days=100000", "sequences.max_rejected_share=0.01", "sequences.num_negatives=64",
          "sequences.max_history=200", "spark.conf={spark.driver.memory: 4g}"]
SETUPS = {  # name: (backend, num_proc, threads)
    "1proc_x_1thread": ("single", 1, 1),
    "1proc_x_2threads": ("single", 1, 2),
    "horovod_2proc_x_1thread": ("horovod", 2, 1),
}


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([str(RECSYS), *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _wait(job: subprocess.Popen) -> None:
    _, err = job.communicate()
    if job.returncode:
        raise RuntimeError(f"{' '.join(map(str, job.args))} failed:\n{err[-3000:]}")


def _recsys(args: list[str], cwd: Path) -> None:
    _wait(_start(args, cwd))


def _sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def build_night(name: str, workdir: Path) -> tuple[str, list[str]]:
    """Dataset ``name``'s night built in ``workdir`` by the real jobs: (ds, its build overrides)."""
    fmt, path, overrides = DATASETS[name]
    if fmt == "synthetic":
        overrides = [*SYNTHETIC, *overrides]
        _recsys(["generate-events", "--ds", SYNTHETIC_DS, "--days", str(SYNTHETIC_DAYS), "--log-level", "WARNING",
                 *_sets(COMMON + overrides)], workdir)
    else:
        _recsys(["import-events", "--format", fmt, "--path", str(path), "--log-level", "WARNING",
                 *_sets(COMMON)], workdir)
    nights = sorted(p.name.split("=")[1] for p in (workdir / "var/warehouse/recsys.db/events").glob("ds=*"))
    ds = nights[-1]
    _recsys(["build-sequences", "--ds", ds, "--log-level", "WARNING", *_sets(COMMON + overrides)], workdir)
    return ds, overrides


def run_dataset(name: str, epochs: int, batch_size: int, workdir: Path) -> dict:
    ds, overrides = build_night(name, workdir)
    meta = json.loads((workdir / "var" / "datasets" / f"ds={ds}" / "metadata.json").read_text())
    out = {"ds": ds, "items": meta["num_items"] - 1, "training_positions": meta["num_training_positions"],
           "batch_size": batch_size}
    train = [f"train.epochs={epochs}", "train.patience=100", "train.embedding_dim=64", "train.hidden_size=128",
             "train.loss=softmax", f"train.batch_size={batch_size}", *COMMON, *overrides]
    for setup, (backend, procs, threads) in SETUPS.items():
        setup_args = [f"train.backend={backend}", f"train.num_proc={procs}", f"train.threads_per_proc={threads}"]
        _wait(_train(workdir, ds, f"bench-{setup}", train + setup_args))
        out[setup] = _summary(workdir, f"bench-{setup}")
        print(name, setup, out[setup], flush=True)
    # The machine's real ideal for two ranks: two independent single-thread trainings at the same time
    # (same contention for cores, caches and memory bandwidth; no communication). A twin workspace
    # because a night's training lock admits one run per storage root.
    twin = workdir / "twin"
    shutil.copytree(workdir / "var", twin / "var")
    single = train + ["train.backend=single", "train.num_proc=1", "train.threads_per_proc=1"]
    jobs = [_train(workdir, ds, "bench-pair-a", single), _train(twin, ds, "bench-pair-b", single)]
    for job in jobs:
        _wait(job)
    pair = [_summary(workdir, "bench-pair-a"), _summary(twin, "bench-pair-b")]
    out["2_independent_1proc_x_1thread"] = {
        "positions_per_second": sum(r["positions_per_second"] for r in pair),
        "seconds_per_epoch": max(r["seconds_per_epoch"] for r in pair)}
    print(name, "2_independent_1proc_x_1thread", out["2_independent_1proc_x_1thread"], flush=True)
    horovod = out["horovod_2proc_x_1thread"]["positions_per_second"]
    out["horovod_scaling_vs_2x_single"] = round(horovod / (2 * out["1proc_x_1thread"]["positions_per_second"]), 2)
    out["horovod_scaling_vs_2_concurrent_singles"] = round(
        horovod / out["2_independent_1proc_x_1thread"]["positions_per_second"], 2)
    return out


def _train(workdir: Path, ds: str, version: str, overrides: list[str]) -> subprocess.Popen:
    return _start(["train", "--ds", ds, "--model-version", version, "--log-level", "WARNING",
                   *_sets(overrides)], workdir)


def _summary(workdir: Path, version: str) -> dict:
    history = json.loads((workdir / "var" / "models" / version / "metrics.json").read_text())["history"]
    return {"positions_per_second": round(statistics.median(h["positions_per_second"] for h in history)),
            "seconds_per_epoch": round(statistics.median(h["train_seconds"] for h in history), 1),
            "validation_ndcg@10": round(max(h["validation"]["ndcg@10"] for h in history), 4),
            "validation_hr@10": round(max(h["validation"]["hr@10"] for h in history), 4)}


def run_catalogue(items: int, epochs: int, workdir: Path) -> dict:
    """The shipped defaults against the full softmax on a synthetic night of ``items`` items."""
    synthetic = [f"synthetic.n_items={items}", "synthetic.n_users=20000", "synthetic.events_per_day=60000",
                 "synthetic.item_popularity_power=1.5", "synthetic.new_items_per_day=0",
                 "synthetic.new_users_per_day=0", "sequences.min_item_support=2"]
    overrides = [*COMMON, *synthetic, "sequences.window_length=50", "sequences.stride=50"]
    _recsys(["generate-events", "--ds", SYNTHETIC_DS, "--days", str(SYNTHETIC_DAYS), "--log-level", "WARNING",
             *_sets(overrides)], workdir)
    _recsys(["build-sequences", "--ds", SYNTHETIC_DS, "--log-level", "WARNING", *_sets(overrides)], workdir)
    meta = json.loads((workdir / "var" / "datasets" / f"ds={SYNTHETIC_DS}" / "metadata.json").read_text())
    out = {"ds": SYNTHETIC_DS, "items": meta["num_items"] - 1, "training_positions": meta["num_training_positions"],
           "epochs": epochs, "setup": "horovod_2proc_x_1thread, shipped train defaults otherwise"}
    train = [*overrides, f"train.epochs={epochs}", "train.patience=100", "train.backend=horovod",
             "train.num_proc=2", "train.threads_per_proc=1"]
    for name, loss in (("shipped_defaults", "auto"), ("full_softmax", "softmax")):
        _wait(_train(workdir, SYNTHETIC_DS, f"bench-{name}", [*train, f"train.loss={loss}"]))
        out[name] = _summary(workdir, f"bench-{name}")
        out[name]["loss"] = json.loads((workdir / "var" / "models" / f"bench-{name}" / "metrics.json").read_text())["loss"]
        print(f"catalogue {out['items']}", name, out[name], flush=True)
    out["speedup"] = round(out["shipped_defaults"]["positions_per_second"]
                           / out["full_softmax"]["positions_per_second"], 2)
    out["ndcg@10_ratio"] = round(out["shipped_defaults"]["validation_ndcg@10"]
                                 / out["full_softmax"]["validation_ndcg@10"], 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="64,256", help="per-process batch sizes, each a run")
    parser.add_argument("--catalogue", type=int, default=0,
                        help="run only the catalogue-scale row with about this many items (e.g. 50000)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training.json"))
    args = parser.parse_args()
    out = Path(args.out)
    # Runs of other datasets/batch sizes already recorded are kept: each key is replaced only when re-run.
    recorded = json.loads(out.read_text()) if out.exists() else {}
    results = recorded.get("results", {})
    if args.catalogue:
        key = f"synthetic-{args.catalogue // 1000}k-catalogue"
        history = recorded.get("history", [])
        if key in results:  # the row it replaces stays visible
            history.append({"replaced_on": time.strftime("%Y-%m-%d"), key: results[key]})
        with tempfile.TemporaryDirectory() as tmp:
            results[key] = run_catalogue(args.catalogue, args.epochs, Path(tmp))
        out.write_text(json.dumps({**recorded, "results": results, "history": history}, indent=2))
        return
    for name in args.datasets.split(","):
        for batch_size in map(int, args.batch_sizes.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                results[f"{name}@batch{batch_size}"] = run_dataset(name, args.epochs, batch_size, Path(tmp))
    out.write_text(json.dumps({**recorded, "machine": "2 cores", "epochs": args.epochs, "results": results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
