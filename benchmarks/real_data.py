"""Real-data benchmark of the baselines and the evaluation library against ANCHORS.md.

Reads the public files under ``../shared/datasets/`` in place (nothing is copied into the repo):

* MovieLens-100K ``u.data`` and Amazon Beauty (S3-Rec ``Beauty.txt``): leave-last-out test split,
  full ranking over items seen in the fit data, history masked, conservative ties;
* YooChoose clicks 100k (``train_full`` -> ``test``): the GRU4Rec session protocol.

The loaders only parse files into per-user/per-session sequences (Spark DataFrames); the split, the
baselines and the metrics are the library's. Results go to ``benchmarks/results/real_data.json`` with
the ANCHORS cross-check figures next to the measured ones.

    .venv/bin/python -m benchmarks.real_data [--datasets movielens-100k beauty yoochoose]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import baselines as B
from recsys_spark import evaluation as E
from recsys_spark import schemas as S
from recsys_spark.config import load_config
from recsys_spark.runtime import configure_logging
from recsys_spark.session import get_spark

log = logging.getLogger("benchmark")

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RESULTS = Path(__file__).resolve().parent / "results"
BASE_TS = pd.Timestamp("2000-01-01")
"""Order-only files (Beauty) get BASE_TS + k seconds for their k-th event, as the importers do."""

ANCHORS = {
    # dataset: {baseline: {metric: value}} from ANCHORS.md (measured on this machine class).
    "movielens-100k": {
        B.MOST_POPULAR: {"hr@10": 0.0862, "ndcg@10": 0.0440, "hr@20": 0.1266, "ndcg@20": 0.0541},
        B.TRANSITIONS: {"hr@10": 0.1457, "ndcg@10": 0.0794, "hr@20": 0.2266, "ndcg@20": 0.0997},
        "n_queries": 940,
    },
    "beauty": {
        B.MOST_POPULAR: {"hr@10": 0.0130, "ndcg@10": 0.0060, "hr@20": 0.0217, "ndcg@20": 0.0081},
        B.TRANSITIONS: {"hr@10": 0.0757, "ndcg@10": 0.0503, "hr@20": 0.0926, "ndcg@20": 0.0545},
        "n_queries": 22311,
    },
    "yoochoose": {
        B.MOST_POPULAR: {"hr@10": 0.0739, "hr@20": 0.0894, "mrr@20": 0.0264},
        B.TRANSITIONS: {"hr@10": 0.5479, "hr@20": 0.5907, "mrr@20": 0.3430},
        B.SKNN: {"hr@10": 0.5972, "hr@20": 0.6703, "mrr@20": 0.3561},
        "n_queries": 10152,
    },
}
TOLERANCE = 0.002
"""Largest |measured - anchor| accepted for the deterministic cross-checks (rounding is 0.00005)."""


def _sequences(spark: SparkSession, events: pd.DataFrame) -> DataFrame:
    """Per-key sequences (user_id, item_idx array<int>, ts array<timestamp>) from an event frame
    (user_id, item_idx, ts, order): ordered in Spark by ``order``, the file's tie-break."""
    df = spark.createDataFrame(events[["user_id", "item_idx", "ts", "order"]].astype(
        {"user_id": str, "item_idx": "int32", "order": "int64"}))
    ordered = F.array_sort(F.collect_list(F.struct("order", S.ITEM_IDX, S.TS))).alias("_e")
    return (df.groupBy(S.USER_ID).agg(ordered)
            .select(S.USER_ID, F.col("_e." + S.ITEM_IDX).alias(S.ITEM_IDX), F.col("_e." + S.TS).alias(S.TS)))


def _index(raw: pd.Series) -> tuple[pd.Series, int]:
    """Dense item indices 1..n in sorted raw-id order (0 stays padding); returns (indices, n + 1)."""
    vocab = np.sort(raw.unique())
    return pd.Series(np.searchsorted(vocab, raw) + 1, index=raw.index), len(vocab) + 1


def load_movielens(spark: SparkSession) -> tuple[DataFrame, int]:
    df = pd.read_csv(DATA / "movielens-100k" / "u.data", sep="\t", names=["user_id", "item", "rating", "t"])
    df["order"] = np.arange(len(df))  # file order breaks timestamp ties
    df = df.sort_values(["user_id", "t", "order"], kind="stable")
    df["order"] = np.arange(len(df))
    df["item_idx"], num_items = _index(df["item"])
    df["ts"] = pd.to_datetime(df["t"], unit="s")
    return _sequences(spark, df), num_items


def load_beauty(spark: SparkSession) -> tuple[DataFrame, int]:
    rows = []
    for line in (DATA / "amazon-beauty-s3rec" / "Beauty.txt").read_text().splitlines():
        user, *items = line.split()
        rows += [(user, int(item), k) for k, item in enumerate(items)]
    df = pd.DataFrame(rows, columns=["user_id", "item", "order"])
    df["item_idx"], num_items = _index(df["item"])
    df["ts"] = BASE_TS + pd.to_timedelta(df["order"], unit="s")
    return _sequences(spark, df), num_items


def load_yoochoose(spark: SparkSession) -> tuple[DataFrame, DataFrame, int]:
    """(train sessions, test sessions, N) with one vocabulary over both files."""
    folder = DATA / "yoochoose-clicks-100k"
    frames = [pd.read_csv(folder / f"yoochoose-clicks-100k_{part}.txt", sep="\t")
              for part in ("train_full", "test")]
    for i, df in enumerate(frames):
        df["order"] = np.arange(len(df))
        df.sort_values(["SessionId", "Time", "order"], kind="stable", inplace=True)
        df["order"] = np.arange(len(df))
        df["part"] = i
    both = pd.concat(frames, ignore_index=True)
    both["item_idx"], num_items = _index(both["ItemId"])
    both["user_id"] = both["SessionId"].astype(str)
    both["ts"] = pd.to_datetime(both["Time"], unit="s")
    train, test = (_sequences(spark, both[both["part"] == i]) for i in (0, 1))
    return train, test, num_items


def run_dataset(spark: SparkSession, name: str, ev) -> dict:
    start = time.perf_counter()
    if name == "yoochoose":
        fit, test, num_items = load_yoochoose(spark)
        protocol, split, mask_seen = E.SESSION, E.TEST, False
        queries_df = E.session_queries(test)
    else:
        sequences, num_items = (load_movielens if name == "movielens-100k" else load_beauty)(spark)
        protocol, split, mask_seen = E.LEAVE_LAST_OUT, E.TEST, True
        fit, queries_df = E.leave_last_out(sequences, E.TEST)
    data = B.prepare_fit_data(fit, num_items)
    queries = E.collect_queries(queries_df)
    log.info("%s: %d items, %d queries, input width %d", name, num_items - 1, len(queries),
             queries.inputs.shape[1])
    results = E.evaluate_baselines(data, queries, ev.baselines, ev, protocol=protocol, split=split,
                                   mask_seen=mask_seen)
    data.sequences.unpersist()
    anchors = ANCHORS[name]
    checks = []
    for r in results:
        for metric, expected in anchors.get(r.name, {}).items():
            checks.append({"scorer": r.name, "metric": metric, "anchor": expected,
                           "measured": round(r.metrics[metric], 4),
                           "diff": round(r.metrics[metric] - expected, 4)})
    return {
        "dataset": name, "protocol": protocol, "split": split, "mask_seen": mask_seen,
        "num_items": num_items - 1, "n_queries": results[0].n_queries if results else 0,
        "n_skipped": results[0].n_skipped if results else 0, "anchor_n_queries": anchors["n_queries"],
        "scorers": {r.name: {"metrics": {k: round(v, 4) for k, v in r.metrics.items()},
                             "seconds": round(r.seconds, 1)} for r in results},
        "cross_checks": checks, "seconds": round(time.perf_counter() - start, 1),
    }, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["movielens-100k", "beauty", "yoochoose"],
                        choices=sorted(ANCHORS))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override, e.g. evaluate.sknn_decay=div")
    parser.add_argument("--out", default=str(RESULTS / "real_data.json"))
    parser.add_argument("--report-dir", default=str(RESULTS / "real_data_report"))
    args = parser.parse_args(argv)
    configure_logging("INFO")
    work = Path(tempfile.mkdtemp(prefix="recsys-bench-"))
    cfg = load_config("local", [
        "spark.master=local[2]", "spark.hive=false", f"spark.warehouse_dir={work / 'warehouse'}",
        f"storage.root={work / 'var'}",
        "spark.conf={spark.driver.memory: 6g, spark.sql.shuffle.partitions: '4'}", *args.overrides])
    owned = SparkSession.getActiveSession() is None  # never stop a session a caller (pytest) shares
    spark = get_spark(cfg)
    start = time.perf_counter()
    summary, all_results = [], []
    for name in args.datasets:
        entry, results = run_dataset(spark, name, cfg.evaluate)
        summary.append(entry)
        all_results += results
        for r in results:
            r.protocol = f"{name}:{r.protocol}"
    total = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"total_seconds": total, "tolerance": TOLERANCE,
                               "evaluate_config": cfg.evaluate.__dict__, "datasets": summary}, indent=2))
    E.write_report(all_results, args.report_dir, "real_data",
                   notes=[f"Real-data benchmark, total {total:.0f}s on local[2]."])
    bad = [dict(c, dataset=e["dataset"]) for e in summary for c in e["cross_checks"]
           if c["scorer"] != B.SKNN and abs(c["diff"]) > TOLERANCE]
    for e in summary:
        for c in e["cross_checks"]:
            log.info("%-15s %-17s %-8s anchor %.4f measured %.4f (%+.4f)", e["dataset"], c["scorer"],
                     c["metric"], c["anchor"], c["measured"], c["diff"])
    log.info("total %.1fs; results in %s", total, out)
    if owned:
        spark.stop()
    if bad:
        log.error("cross-checks off by more than %.3f: %s", TOLERANCE, bad)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
