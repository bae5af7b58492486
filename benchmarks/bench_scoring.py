"""Benchmark: nightly scoring users/second for top-100 vs Spark ALS recommendForAllUsers(100).

Same users (100k, ~20 interactions each, Zipf-like items), same catalogue (5k and 50k items), same
session (local[2], driver 8g), both written to Spark's no-op sink and timed side by side in one run.
Our scorer also masks every user's seen items (ALS does not). Writes benchmarks/results/scoring.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS
from pyspark.sql import SparkSession

from recsys_spark import schemas as S
from recsys_spark.config import load_config
from recsys_spark.model import LSTMRecommender, save_model
from recsys_spark.session import get_spark
from recsys_spark.scoring import (ModelPayload, ScoringSpec, broadcast_scoring, id_lookup, popularity_list, score_users,
                                  scoring_inputs)

ROOT = Path(__file__).resolve().parent.parent
K = 100


def interactions(n_users: int, n_items: int, per_user: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    items = np.minimum((n_items * rng.random(n_users * per_user) ** 2.5).astype(np.int64), n_items - 1) + 1
    users = np.repeat(np.arange(n_users), per_user)
    return pd.DataFrame({"user": users, "item": items})


def timed_noop(df) -> float:
    start = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start


def run(spark: SparkSession, n_users: int, n_items: int, repeats: int, workdir: Path) -> dict:
    pairs = interactions(n_users, n_items, 20, seed=n_items)
    seqs = pairs.groupby("user")["item"].apply(lambda s: s.to_numpy(np.int32).tolist()).reset_index()
    seqs_df = spark.createDataFrame(pd.DataFrame({S.USER_ID: "u" + seqs["user"].astype(str),
                                                  S.ITEM_IDX: seqs["item"]})).repartition(8).cache()
    seqs_df.count()
    torch_model = LSTMRecommender(n_items + 1, embedding_dim=64, hidden_size=128)
    save_model(torch_model, workdir / f"m{n_items}")
    index = pd.DataFrame({S.ITEM_ID: [f"i{k}" for k in range(1, n_items + 1)],
                          S.ITEM_IDX: np.arange(1, n_items + 1),
                          S.COUNT: np.bincount(pairs["item"], minlength=n_items + 1)[1:]})
    popular, pop_scores = popularity_list(index, set(), K + 50)
    spec = ScoringSpec(k=K, mask_seen=True, min_history=1, batch_size=512, threads=1)
    inputs = scoring_inputs(seqs_df, 50).cache()
    inputs.count()
    payload = ModelPayload.from_artifact(f"bench{n_items}", workdir / f"m{n_items}")
    shared = broadcast_scoring(spark.sparkContext, payload, id_lookup(index), popular, pop_scores, np.zeros(0, np.int64))
    ours = [timed_noop(score_users(inputs, shared, spec)) for _ in range(repeats)]

    ratings = spark.createDataFrame(pairs.groupby(["user", "item"]).size().rename("rating").reset_index()
                                    .astype({"rating": "float32"})).cache()
    ratings.count()
    start = time.perf_counter()
    als = ALS(rank=64, maxIter=5, implicitPrefs=True, userCol="user", itemCol="item", ratingCol="rating",
              seed=1, coldStartStrategy="drop").fit(ratings)
    fit = time.perf_counter() - start
    theirs = [timed_noop(als.recommendForAllUsers(K)) for _ in range(repeats)]
    for df in (seqs_df, inputs, ratings):
        df.unpersist()
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    return {"users": n_users, "items": n_items, "k": K, "repeats": repeats,
            "lstm_seconds_median": round(ours_s, 1), "lstm_users_per_second": round(n_users / ours_s),
            "als_fit_seconds": round(fit, 1), "als_seconds_median": round(theirs_s, 1),
            "als_users_per_second": round(n_users / theirs_s),
            "ratio_lstm_over_als": round(theirs_s / ours_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", default="5000,50000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scoring.json"))
    args = parser.parse_args()
    spark = get_spark(load_config("local", [
        "spark.master=local[2]", "spark.hive=false",
        "spark.conf={spark.driver.memory: 8g, spark.sql.shuffle.partitions: '8'}"]))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_items in map(int, args.items.split(",")):
            results.append(run(spark, args.users, n_items, args.repeats, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"machine": "2 cores, local[2], driver 8g", "results": results}, indent=2))


if __name__ == "__main__":
    main()
