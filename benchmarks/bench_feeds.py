"""Benchmark: the two training feeds (``train.feed: petastorm | arrow``) alone and inside training.

For each dataset (the synthetic 3k-item night and MovieLens-100K; the real jobs build them in a fresh
workspace, as ``bench_training.py`` does):

* **the feed alone**, one process reading its whole shard, for each feed: the reader start-up of an
  epoch (calling ``Feed.epoch`` to its first batch: what Petastorm pays per epoch to open a reader,
  list the store and fill its queue) and examples/s over the epoch (median of ``--epochs``);
* **training end to end** with each feed, for 1 process, 2 Horovod ranks and 2 DDP ranks
  (TorchDistributor): target positions/s (the trainer's own count, training steps only) and seconds
  per epoch, medians over the epochs, the same model and batch for every run.

Writes benchmarks/results/feeds.json and feeds.png; the README's table is made from the JSON.

usage: python -m benchmarks.bench_feeds [--datasets synthetic-3k,movielens-100k] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_training import COMMON, _summary, _train, _wait, build_night
from recsys_spark.config import load_config
from recsys_spark.datasets import TRAINING_EXAMPLES, dataset_dir
from training.data import make_feed

ROOT = Path(__file__).resolve().parent.parent
FEEDS = ("petastorm", "arrow")
SETUPS = {  # name: (backend, num_proc)
    "1proc": ("single", 1),
    "horovod_2proc": ("horovod", 2),
    "ddp_2proc": ("ddp", 2),
}
MODEL = ["train.embedding_dim=64", "train.hidden_size=128", "train.loss=softmax", "train.threads_per_proc=1"]


def feed_alone(workdir: Path, ds: str, feed: str, batch_size: int, epochs: int) -> dict:
    """One rank reading the whole store: construction, per-epoch start-up and examples/s."""
    tc = load_config("local", [f"train.feed={feed}", f"train.batch_size={batch_size}"]).train
    path = dataset_dir(str(workdir / "var"), ds) / TRAINING_EXAMPLES
    started = time.perf_counter()
    reader = make_feed(tc, path, rank=0, world_size=1)
    construction = time.perf_counter() - started
    startups, rates = [], []
    for epoch in range(epochs):
        started = time.perf_counter()
        batches = reader.epoch(epoch)
        next(batches)
        startups.append(time.perf_counter() - started)
        for _ in batches:
            pass
        rates.append(reader.steps * batch_size / (time.perf_counter() - started))
    return {"construction_seconds": round(construction, 3),
            "epoch_startup_seconds": round(statistics.median(startups), 3),
            "examples_per_second": round(statistics.median(rates)), "examples_per_epoch": reader.steps * batch_size}


def run_dataset(name: str, epochs: int, batch_size: int, workdir: Path) -> dict:
    ds, overrides = build_night(name, workdir)
    meta = json.loads((workdir / "var" / "datasets" / f"ds={ds}" / "metadata.json").read_text())
    out: dict = {"ds": ds, "items": meta["num_items"] - 1, "training_positions": meta["num_training_positions"],
                 "batch_size_per_process": batch_size, "feed_alone": {}, "training": {}}
    for feed in FEEDS:
        out["feed_alone"][feed] = feed_alone(workdir, ds, feed, batch_size, epochs)
        print(name, feed, "alone", out["feed_alone"][feed], flush=True)
    train = [f"train.epochs={epochs}", "train.patience=100", f"train.batch_size={batch_size}", *MODEL,
             *COMMON, *overrides]
    for setup, (backend, procs) in SETUPS.items():
        for feed in FEEDS:
            version = f"bench-{setup}-{feed}"
            _wait(_train(workdir, ds, version, [*train, f"train.backend={backend}", f"train.num_proc={procs}",
                                                f"train.feed={feed}"]))
            out["training"][f"{setup}/{feed}"] = _summary(workdir, version)
            print(name, setup, feed, out["training"][f"{setup}/{feed}"], flush=True)
    return out


def markdown(results: dict) -> str:
    lines = ["| dataset | feed | reader start-up per epoch | examples/s alone | 1 process: pos/s (s/epoch) "
             "| 2 Horovod ranks | 2 DDP ranks |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for feed in FEEDS:
            alone = r["feed_alone"][feed]
            cells = [f"{r['training'][f'{setup}/{feed}']['positions_per_second']:,} "
                     f"({r['training'][f'{setup}/{feed}']['seconds_per_epoch']} s)" for setup in SETUPS]
            lines.append(f"| {name} | {feed} | {alone['epoch_startup_seconds']:.2f} s | "
                         f"{alone['examples_per_second']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        x = np.arange(len(SETUPS))
        for offset, feed in ((-0.2, FEEDS[0]), (0.2, FEEDS[1])):
            ax.bar(x + offset, [r["training"][f"{s}/{feed}"]["positions_per_second"] for s in SETUPS], 0.4,
                   label=feed)
        ax.set_xticks(x, list(SETUPS))
        ax.set_title(f"{name}: training positions/s")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="synthetic-3k,movielens-100k")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "feeds.json")
    args = parser.parse_args()
    results = {}
    for name in args.datasets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run_dataset(name, args.epochs, args.batch_size, Path(tmp))
    args.out.write_text(json.dumps({"machine": "2 cores, 24 GiB", "epochs": args.epochs,
                                    "model": "LSTM 64/128, full softmax, 1 thread per process",
                                    "results": results}, indent=2))
    args.out.with_suffix(".md").write_text(markdown(results))
    plot(results, args.out.with_suffix(".png"))
    print(markdown(results))


if __name__ == "__main__":
    main()
