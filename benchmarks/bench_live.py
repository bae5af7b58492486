"""Benchmark: the live refresh (``recsys stream``) under a steady stream of new events.

A night with 100k users in ``user_state`` (histories of 5-60 Zipf-drawn items), a 3k- and a 50k-item
catalogue, and a production model of the shipped architecture (128/256 LSTM, window 50; weights
random: the cost of scoring does not depend on them) are laid out as the nightly leaves them. Then
the real query runs (long-running, ``stream.trigger_seconds`` 0.5) while a producer writes JSON-lines
files of uniformly drawn users and popularity-drawn items at 100, 1,000 and 5,000 events/s for
``--seconds``, after ``--warmup-seconds`` (10) of the same traffic, untimed. Per run: the events/s the
stream sustained, and the latency from a file landing (its rename into the landing directory) to its
users' rows being committed (readable), p50/p95/max over events. A run whose latency keeps growing
has saturated: what it processed per second is then the ceiling. Writes benchmarks/results/live.json (and a PNG of latency over time per run).

usage: python -m benchmarks.bench_live [--seconds 60] [--warmup-seconds 10] [--rates 100 1000 5000]
                                       [--catalogues 3000 50000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_spark import schemas as S
from recsys_spark.build import ITEM_INDEX
from recsys_spark.config import load_config
from recsys_spark.datasets import DatasetMetadata, dataset_dir
from recsys_spark.emit import emit_traffic
from recsys_spark.live import LiveStream, landing_dir, stream_dir
from recsys_spark.model import LSTMRecommender, save_model
from recsys_spark.published import RECOMMENDATIONS, write_record
from recsys_spark.registry import models_root, register, set_production
from recsys_spark.session import get_spark
from recsys_spark.tables import ensure_table, overwrite_partitions, qualified
from recsys_spark.user_state import USER_STATE_SCHEMA, user_state_table

ROOT = Path(__file__).resolve().parent.parent
NIGHT = "2026-11-26"
USERS = 100_000
WINDOW = 50


def lay_out_night(spark, cfg, n_items: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """item_index, user_state, dataset metadata, a registered production model and the night's publish
    record, as the nightly leaves them. Returns (users, item_ids, popularity weights)."""
    rng = np.random.default_rng(seed)
    db = cfg.storage.database
    counts = np.maximum(1, (1e6 * (np.arange(1, n_items + 1) ** -1.1)).astype(np.int64))
    item_ids = np.array([f"i{k}" for k in range(1, n_items + 1)], dtype=object)
    index = pd.DataFrame({S.ITEM_ID: item_ids, S.ITEM_IDX: np.arange(1, n_items + 1, dtype=np.int32),
                          S.FIRST_SEEN_DS: NIGHT, S.COUNT: counts, S.VERSION: NIGHT})
    table = qualified(db, ITEM_INDEX)
    ensure_table(spark, table, S.ITEM_INDEX_SCHEMA, partition_by=(S.VERSION,))
    overwrite_partitions(spark.createDataFrame(index, S.ITEM_INDEX_SCHEMA), table)
    weights = counts / counts.sum()
    lengths = rng.integers(5, 61, USERS)
    draws = rng.choice(np.arange(1, n_items + 1, dtype=np.int32), lengths.sum(), p=weights)
    histories = np.split(draws, np.cumsum(lengths)[:-1])
    users = np.array([f"u{k}" for k in range(USERS)], dtype=object)
    states = pd.DataFrame({S.USER_ID: users, S.ITEM_IDX: [h.tolist() for h in histories],
                           "last_ts": pd.Timestamp(NIGHT + " 23:00:00"), "model_version": "bench", S.DS: NIGHT})
    ensure_table(spark, user_state_table(db), USER_STATE_SCHEMA)
    overwrite_partitions(spark.createDataFrame(states, USER_STATE_SCHEMA), user_state_table(db))
    directory = dataset_dir(cfg.storage.root, NIGHT)
    directory.mkdir(parents=True, exist_ok=True)
    DatasetMetadata(ds=NIGHT, num_items=n_items + 1, window_length=WINDOW, num_negatives=0, negative_alpha=0.75,
                    split="leave_last_out", item_index_version=NIGHT, num_training_examples=0,
                    num_training_positions=0, num_validation=0, num_test=0, row_groups=1).save(directory)
    version = f"{NIGHT}-bench{n_items}"
    artifact = models_root(cfg.storage.root) / version
    save_model(LSTMRecommender(n_items + 1, embedding_dim=128, hidden_size=256), artifact)
    register(models_root(cfg.storage.root), version, {}, ds=NIGHT, artifact=str(artifact))
    set_production(models_root(cfg.storage.root), version, reason="benchmark")
    write_record(cfg.storage.root, qualified(db, RECOMMENDATIONS), NIGHT, str(artifact), USERS, version)
    return users, item_ids, weights


def file_batches(checkpoint: Path) -> dict[str, int]:
    """Which micro-batch took each landed file, from the file source's log in the checkpoint."""
    out = {}
    sources = checkpoint / "sources" / "0"
    for log in (sources.iterdir() if sources.exists() else ()):
        if log.name.startswith("."):
            continue
        for line in log.read_text().splitlines()[1:]:
            entry = json.loads(line)
            out[Path(entry["path"].removeprefix("file:")).name] = entry["batchId"]
    return out


def all_folded(cfg, names: list[str]) -> bool:
    """Every named landed file was taken by a micro-batch that has committed (is in the progress log)."""
    progress = stream_dir(cfg) / "progress.jsonl"
    done = {json.loads(line)["batch"] for line in progress.read_text().splitlines()} if progress.exists() else set()
    batches = file_batches(stream_dir(cfg) / "checkpoint")
    return all(batches.get(name) in done for name in names)


def one_run(spark, base_overrides: list[str], workdir: Path, n_items: int, rate: float, seconds: float,
            warmup_seconds: float) -> dict:
    name = f"c{n_items}_r{int(rate)}"
    cfg = load_config("local", [*base_overrides, f"storage.root={workdir / name}",
                                f"storage.database=live_{name}", "stream.trigger_seconds=0.5",
                                f"stream.max_files_per_trigger={max(4, int(rate))}"])
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {cfg.storage.database}")
    users, items, weights = lay_out_night(spark, cfg, n_items, seed=n_items)
    stream = LiveStream(spark, cfg).start()
    progress = stream_dir(cfg) / "progress.jsonl"
    # Warm-up, not timed: the first micro-batch loads the night (scorer, vocabulary, states) and
    # starts the Python workers; the next few still run slower (JIT, the second worker), so the stream
    # first folds warmup_seconds of the same traffic, and only the micro-batches after it count.
    files_per_second = 2.0
    warm = []
    emit_traffic(landing_dir(cfg), users, items, weights, rate, warmup_seconds, files_per_second, 0,
                 on_file=lambda path, n, at: warm.append(path.name))
    while not all_folded(cfg, warm):
        time.sleep(0.2)
    taken = file_batches(stream_dir(cfg) / "checkpoint")
    first_timed = max(taken[name] for name in warm) + 1
    landed: list[tuple[str, int, float]] = []
    emitter = threading.Thread(target=emit_traffic, args=(landing_dir(cfg), users, items, weights, rate, seconds,
                                                         files_per_second, 1),
                               kwargs={"on_file": lambda path, n, at: landed.append((path.name, n, at))})
    started = time.time()
    emitter.start()
    emitter.join()
    deadline = time.time() + max(60.0, seconds)
    while time.time() < deadline:  # let it catch up, but not forever once saturated
        if all_folded(cfg, [f for f, _, _ in landed]):
            break
        time.sleep(1)
    stream.stop()
    batches = file_batches(stream_dir(cfg) / "checkpoint")
    summaries = {s["batch"]: s for s in map(json.loads, progress.read_text().splitlines()) if s["batch"] >= first_timed}
    latencies, weights_n, timeline, processed = [], [], [], 0
    for file, n, at in landed:
        summary = summaries.get(batches.get(file, -1))
        if summary is None:
            continue
        latencies.append(summary["committed"] - at)
        weights_n.append(n)
        timeline.append((at - started, summary["committed"] - at))
        processed += n
    per_event = np.repeat(latencies, weights_n) if latencies else np.array([np.nan])
    last_commit = max((s["committed"] for s in summaries.values()), default=started)
    emitted = sum(n for _, n, _ in landed)
    result = {
        "catalogue": n_items, "offered_events_per_s": rate, "seconds": seconds, "events_emitted": emitted,
        "events_processed": processed, "sustained_events_per_s": round(processed / max(last_commit - started, 1e-9), 1),
        "latency_p50_s": round(float(np.percentile(per_event, 50)), 2),
        "latency_p95_s": round(float(np.percentile(per_event, 95)), 2),
        "latency_max_s": round(float(np.max(per_event)), 2),
        "micro_batches": len(summaries),
        "median_batch_seconds": statistics.median(s["seconds"] for s in summaries.values()) if summaries else None,
        "median_users_per_batch": statistics.median(s["users_refreshed"] for s in summaries.values()) if summaries else None,
        "median_phase_seconds": {phase: statistics.median(s["phases"].get(phase, 0.0) for s in summaries.values())
                                 for phase in dict.fromkeys(p for s in summaries.values() for p in s["phases"])},
        "saturated": saturated(timeline, processed < emitted, processed / max(last_commit - started, 1e-9), rate),
        "timeline": [[round(t, 2), round(lat, 2)] for t, lat in timeline],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}), flush=True)
    return result


def saturated(timeline: list[tuple[float, float]], unfinished: bool, sustained: float, offered: float) -> bool:
    """It fell behind the offered rate: files left unprocessed, under 80% of the rate sustained, or
    the latency of the last quarter's files more than twice (plus 2 s) the first quarter's (the
    backlog grows)."""
    if unfinished or sustained < 0.8 * offered:
        return True
    if len(timeline) < 4:
        return False
    latencies = [lat for _, lat in sorted(timeline)]
    quarter = len(latencies) // 4
    return statistics.median(latencies[-quarter:]) > 2 * statistics.median(latencies[:quarter]) + 2


def previous_runs(path: Path) -> list[dict]:
    """The earlier results' rows (without their timelines), so a re-measurement keeps what it replaces."""
    if not path.exists():
        return []
    before = json.loads(path.read_text())
    rows = [{k: v for k, v in r.items() if k != "timeline"} | {"measured": before.get("measured", "2026-12-02")}
            for r in before["runs"]]
    return before.get("history", []) + rows


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, n_items in zip(axes, sorted({r["catalogue"] for r in runs})):
        for r in (r for r in runs if r["catalogue"] == n_items):
            t = np.array(r["timeline"])
            if len(t):
                ax.plot(t[:, 0], t[:, 1], marker=".", label=f"{int(r['offered_events_per_s'])} events/s")
        ax.axhline(5, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(f"{n_items:,} items, {USERS:,} users")
        ax.set_xlabel("file landed at (s into the run)")
        ax.legend()
    axes[0].set_ylabel("landing -> readable (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup-seconds", type=float, default=10,
                        help="untimed traffic at the run's rate before the timed part")
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--catalogues", type=int, nargs="+", default=[3000, 50000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "live.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_live_"))
    overrides = ["spark.master=local[2]", f"spark.warehouse_dir={workdir / 'warehouse'}",
                 f"spark.metastore_dir={workdir / 'metastore'}",
                 "spark.conf={spark.sql.shuffle.partitions: '4', spark.driver.memory: 6g}"]
    spark = get_spark(load_config("local", overrides))
    runs = [one_run(spark, overrides, workdir, n_items, rate, args.seconds, args.warmup_seconds)
            for n_items in args.catalogues for rate in args.rates]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": "2 cores, 24 GiB; Spark local[2]", "users": USERS,
                                    "window_length": WINDOW, "model": "LSTM 128/256, full softmax",
                                    "trigger_seconds": 0.5, "measured": dt.date.today().isoformat(),
                                    "runs": runs, "history": previous_runs(args.out)}, indent=1))
    plot(runs, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
