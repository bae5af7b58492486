"""Benchmark: similar-items table throughput (items/second) vs Spark ALS item-factor cosine top-k.

Same catalogue (5k and 50k items), same session (local[2], driver 8g), same k, both computed in Spark
over blocks of items with ``mapInPandas`` and written to Spark's no-op sink, timed side by side in one
run (median of ``--repeats``). Ours: :func:`recsys_spark.similar.score_similar` with the shipped rule on
an LSTM of the shipped size (128-dim embeddings, 256 hidden units, the transition term with ~10
successors per item; random weights: throughput does not depend on their values). ALS: implicit
``pyspark.ml`` ALS (rank 64, 5 iterations) fitted on synthetic interactions, then every item's top-k
by cosine of the item factors, itself excluded. Writes benchmarks/results/similar_items.json and .md.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from pyspark.ml.recommendation import ALS
from pyspark.sql import SparkSession

from benchmarks.bench_scoring import interactions, timed_noop
from recsys_spark import schemas as S
from recsys_spark.baselines import top_k_indices
from recsys_spark.config import load_config
from recsys_spark.model import LSTMRecommender, save_model
from recsys_spark.scoring import ModelPayload, id_lookup, popularity_list, rec_lists
from recsys_spark.session import get_spark
from recsys_spark.similar import SIMILAR, SIMILAR_SCORED_SCHEMA, SimilarSpec, score_similar

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SUCCESSORS = 10


def shipped_model(n_items: int, seed: int) -> LSTMRecommender:
    """An LSTM of the shipped size with ~SUCCESSORS random transition pairs per item."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(1, n_items + 1, n_items * SUCCESSORS) * (n_items + 1)
                     + rng.integers(1, n_items + 1, n_items * SUCCESSORS))
    model = LSTMRecommender(n_items + 1, embedding_dim=128, hidden_size=256, transition_pairs=len(keys))
    model.set_transitions(torch.as_tensor(keys // (n_items + 1)), torch.as_tensor(keys % (n_items + 1)),
                          torch.as_tensor(rng.integers(1, 50, len(keys))))
    return model


def als_cosine_top_k(spark: SparkSession, factors: pd.DataFrame, ids: np.ndarray, k: int, partitions: int,
                     batch_size: int):
    """Every item's top-k by cosine of its ALS factors (itself excluded), in Spark over item blocks."""
    unit = np.zeros((len(ids), len(factors["features"].iloc[0])), dtype=np.float32)
    unit[factors["id"].to_numpy()] = np.stack(factors["features"].to_list())
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    unit_b = spark.sparkContext.broadcast((unit, ids))

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        torch.set_num_threads(1)
        table, names = unit_b.value
        matrix = torch.from_numpy(table)
        for frame in batches:
            for start in range(0, len(frame), batch_size):
                part = frame.iloc[start:start + batch_size]
                idx = torch.as_tensor(part[S.ITEM_IDX].to_numpy(np.int64))
                scores = (matrix[idx] @ matrix.t()).scatter(1, idx.unsqueeze(1), -math.inf)
                scores[:, 0] = -math.inf
                top = top_k_indices(scores, k)
                yield pd.DataFrame({S.ITEM_ID: part[S.ITEM_ID].to_numpy(),
                                    SIMILAR: rec_lists(names, top.numpy(), scores.gather(1, top).numpy()),
                                    "model_version": "als"})

    items = spark.createDataFrame(pd.DataFrame({S.ITEM_ID: ids[1:], S.ITEM_IDX: np.arange(1, len(ids))}))
    return items.repartition(partitions).mapInPandas(score, schema=SIMILAR_SCORED_SCHEMA)


def run(spark: SparkSession, n_items: int, n_users: int, k: int, repeats: int, partitions: int,
        batch_size: int, rule: str, workdir: Path) -> dict:
    pairs = interactions(n_users, n_items, 20, seed=n_items)
    index = pd.DataFrame({S.ITEM_ID: [f"i{j}" for j in range(1, n_items + 1)], S.ITEM_IDX: np.arange(1, n_items + 1),
                          S.COUNT: np.bincount(pairs["item"], minlength=n_items + 1)[1:]})
    ids = id_lookup(index)
    save_model(shipped_model(n_items, seed=n_items), workdir / f"m{n_items}")
    payload = ModelPayload.from_artifact(f"bench{n_items}", workdir / f"m{n_items}")
    popular, pop_scores = popularity_list(index, set(), k + 1)
    spec = SimilarSpec(k=k, rule=rule, blend_weight=1.0, batch_size=batch_size,
                       threads=int(spark.conf.get("spark.task.cpus", "1")))
    items = spark.createDataFrame(index[[S.ITEM_ID, S.ITEM_IDX]]).repartition(partitions, S.ITEM_ID).cache()
    items.count()
    ours = [timed_noop(score_similar(items, payload, ids, popular, pop_scores, np.zeros(0, np.int64), spec))
            for _ in range(repeats)]

    ratings = spark.createDataFrame(pairs.groupby(["user", "item"]).size().rename("rating").reset_index()
                                    .astype({"rating": "float32"})).cache()
    ratings.count()
    start = time.perf_counter()
    als = ALS(rank=64, maxIter=5, implicitPrefs=True, userCol="user", itemCol="item", ratingCol="rating",
              seed=1, coldStartStrategy="drop").fit(ratings)
    fit = time.perf_counter() - start
    factors = als.itemFactors.toPandas()
    theirs = [timed_noop(als_cosine_top_k(spark, factors, ids, k, partitions, batch_size)) for _ in range(repeats)]
    items.unpersist()
    ratings.unpersist()
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    return {"items": n_items, "k": k, "rule": rule, "repeats": repeats, "lstm_seconds": [round(s, 1) for s in ours],
            "lstm_seconds_median": round(ours_s, 1), "lstm_items_per_second": round(n_items / ours_s),
            "als_users": n_users, "als_fit_seconds": round(fit, 1), "als_seconds": [round(s, 1) for s in theirs],
            "als_seconds_median": round(theirs_s, 1), "als_items_per_second": round(n_items / theirs_s),
            "ratio_lstm_over_als": round(theirs_s / ours_s, 2)}


def markdown(results: list[dict]) -> str:
    lines = ["| items | LSTM similar items items/s | median s | ALS item-factor cosine items/s | median s "
             "| LSTM / ALS | ALS fit |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['items']:,} | {r['lstm_items_per_second']:,} | {r['lstm_seconds_median']} "
                     f"| {r['als_items_per_second']:,} | {r['als_seconds_median']} | {r['ratio_lstm_over_als']}x "
                     f"| {r['als_fit_seconds']} s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", default="5000,50000")
    parser.add_argument("--users", type=int, default=50_000, help="synthetic users the ALS model is fitted on")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--rule", default="blend")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default=str(RESULTS / "similar_items.json"))
    args = parser.parse_args()
    spark = get_spark(load_config("local", [
        "spark.master=local[2]", "spark.hive=false",
        "spark.conf={spark.driver.memory: 8g, spark.sql.shuffle.partitions: '8'}"]))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_items in map(int, args.items.split(",")):
            results.append(run(spark, n_items, args.users, args.k, args.repeats, args.partitions,
                               args.batch_size, args.rule, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    out = Path(args.out)
    out.write_text(json.dumps({"machine": "2 cores, local[2], driver 8g", "results": results}, indent=2))
    out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
