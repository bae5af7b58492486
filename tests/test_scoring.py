"""Scoring output contract, masking, fallback, determinism, atomic idempotent publish and the gate."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.gate import decide, evaluate_gate
from recsys_spark.model import LSTMRecommender, save_model
from recsys_spark.publish import (PublishError, partition_location, recommendations_table, stage,
                                  stage_and_publish)
from recsys_spark.published import read_record, read_user
from recsys_spark.scoring import (GENERATED_AT, SCORED_SCHEMA, ModelPayload, ScoringSpec, broadcast_scoring,
                                  history_lengths, id_lookup, popularity_list, score_in_batches, score_users,
                                  scoring_inputs)

DB = "score_test"
N_MODEL_ITEMS = 7  # the model knows indices 1..6; index 7 is newer than the model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A real LSTMRecommender whose scores are exactly the item bias (zero embeddings): the expected
    ranking is known by hand, with ties on purpose (items 2 and 3 share a score)."""
    torch.manual_seed(0)
    model = LSTMRecommender(N_MODEL_ITEMS, embedding_dim=4, hidden_size=4)
    with torch.no_grad():
        model.item_embedding.weight.zero_()
        model.item_bias.copy_(torch.tensor([0.0, 5.0, 4.0, 4.0, 3.0, 2.0, 1.0]))
    directory = tmp_path_factory.mktemp("model") / "v1"
    save_model(model, directory)
    return directory


@pytest.fixture(scope="module")
def index():
    return pd.DataFrame({S.ITEM_ID: [f"i{k}" for k in range(1, 9)], S.ITEM_IDX: list(range(1, 9)),
                         S.COUNT: [10, 50, 40, 30, 20, 60, 70, 5]})


def sequences(spark, rows):
    return spark.createDataFrame([(u, items, [dt.datetime(2026, 11, 20)] * len(items), len(items), "2026-11-20")
                                  for u, items in rows], S.USER_SEQUENCES_SCHEMA)


def run_scoring(spark, model_dir, index, rows, k=3, partitions=2, blocked=(), min_history=1):
    inputs = scoring_inputs(sequences(spark, rows), window_length=4).repartition(partitions)
    popular, pop_scores = popularity_list(index, set(blocked), k + 10)
    spec = ScoringSpec(k=k, mask_seen=True, min_history=min_history, batch_size=2, threads=1)
    shared = broadcast_scoring(spark.sparkContext, ModelPayload.from_artifact("v1", model_dir), id_lookup(index),
                               popular, pop_scores, np.array(sorted(blocked), dtype=np.int64))
    return score_users(inputs, shared, spec)


def recs(*items_scores):
    return [{"rank": r + 1, "item_id": i, "score": s} for r, (i, s) in enumerate(items_scores)]


def test_output_contract_masking_ties_and_fallback(spark, model_dir, index):
    got = run_scoring(spark, model_dir, index, [
        ("u1", [1]),        # seen item 1 masked; tie 2/3 broken by index
        ("u2", [2, 4]),     # seen 2 and 4 masked
        ("u3", [7, 8]),     # only items unknown to the model: popularity fallback minus seen
    ])
    expected = spark.createDataFrame([
        ("u1", recs(("i2", 4.0), ("i3", 4.0), ("i4", 3.0)), "model", "v1"),
        ("u2", recs(("i1", 5.0), ("i3", 4.0), ("i5", 2.0)), "model", "v1"),
        ("u3", recs(("i6", 60 / 285), ("i2", 50 / 285), ("i3", 40 / 285)), "fallback", "v1"),
    ], SCORED_SCHEMA)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, allow_nan_equality=True)


def test_blocklist_and_min_history(spark, model_dir, index):
    got = {r.user_id: r for r in run_scoring(spark, model_dir, index, [("u1", [1]), ("u2", [1, 5])],
                                             blocked=[2], min_history=2).collect()}
    assert [x.item_id for x in got["u2"].recs] == ["i3", "i4", "i6"]  # 2 blocked, 1 and 5 seen
    assert got["u1"].source == "fallback" and "i2" not in [x.item_id for x in got["u1"].recs]


def test_seen_items_never_recommended_even_when_they_score_best(spark, model_dir, index):
    rows = [(f"u{k}", [1, 2, 3][: k % 3 + 1]) for k in range(12)]
    for row in run_scoring(spark, model_dir, index, rows).collect():
        seen = {f"i{x}" for x in dict(rows)[row.user_id]}
        assert not seen & {r.item_id for r in row.recs}


def test_output_independent_of_partitioning(spark, model_dir, index):
    rows = [(f"u{k}", [1 + k % 6, 1 + (k * 3) % 6]) for k in range(30)]
    one = run_scoring(spark, model_dir, index, rows, partitions=1)
    many = run_scoring(spark, model_dir, index, rows, partitions=7)
    assert_df_equality(one, many, ignore_row_order=True)



def test_batches_hold_rows_of_close_history_length_and_rows_keep_their_order(spark, model_dir):
    """The LSTM runs a batch to its longest row: batching by length saves steps, and must not reorder."""
    lengths = [1, 4, 2, 3, 4, 1, 3, 2]
    rows = spark.createDataFrame([(f"u{k}", [0] * (4 - n) + [1] * n) for k, n in enumerate(lengths)],
                                 f"{S.USER_ID} string, {S.INPUT} array<int>").coalesce(1)

    def length_spread(frame, model, *arrays_and_version):
        n = history_lengths(frame)
        return pd.DataFrame({S.USER_ID: frame[S.USER_ID].to_numpy(), "spread": n.max() - n.min()})

    nothing = np.zeros(0, dtype=np.int64)
    shared = broadcast_scoring(spark.sparkContext, ModelPayload.from_artifact("v1", model_dir), *[nothing] * 4)
    schema = f"{S.USER_ID} string, spread long"
    by_length = score_in_batches(rows, shared, 2, 1, length_spread, schema, batch_by=history_lengths).collect()
    assert [r[S.USER_ID] for r in by_length] == [f"u{k}" for k in range(len(lengths))]
    assert {r.spread for r in by_length} == {0}
    as_given = score_in_batches(rows, shared, 2, 1, length_spread, schema).collect()
    assert max(r.spread for r in as_given) == 3

# --- publish ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def db(spark):
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    return DB


def night(spark, scored, ds):
    return scored.withColumn(GENERATED_AT, F.lit(dt.datetime(2026, 11, 21))).withColumn(S.DS, F.lit(ds))


def users_df(spark, rows):
    return scoring_inputs(sequences(spark, rows), 4).select(S.USER_ID, S.SEEN)


def vocabulary(spark, index):
    return spark.createDataFrame(index[[S.ITEM_ID, S.ITEM_IDX]])


def publish(spark, cfg, scored, users, vocab, ds, band=(0.5, 2.0)):
    return stage_and_publish(spark, DB, night(spark, scored, ds), users, vocab, ds, k=3, mask_seen=True,
                             band=list(band), partitions=2, storage_root=cfg.storage.root, model_version="v1")


def published(spark, ds):
    return spark.table(recommendations_table(DB)).where(F.col(S.DS) == ds)


def test_publish_is_idempotent_and_leaves_other_nights_alone(spark, cfg, db, model_dir, index):
    rows = [(f"u{k}", [1 + k % 6]) for k in range(10)]
    scored = run_scoring(spark, model_dir, index, rows).cache()
    users, vocab = users_df(spark, rows), vocabulary(spark, index)
    publish(spark, cfg, scored, users, vocab, "2026-11-19")
    publish(spark, cfg, scored, users, vocab, "2026-11-20")
    before_19 = sorted(map(str, published(spark, "2026-11-19").collect()))
    first = sorted(map(str, published(spark, "2026-11-20").collect()))
    first_record = read_record(cfg.storage.root, recommendations_table(DB), "2026-11-20")
    result = publish(spark, cfg, scored, users, vocab, "2026-11-20")  # re-run the night
    assert sorted(map(str, published(spark, "2026-11-20").collect())) == first
    assert published(spark, "2026-11-20").count() == 10  # exactly one row per user, not doubled
    assert sorted(map(str, published(spark, "2026-11-19").collect())) == before_19
    assert result["replaced"] is not None
    # the re-run rewrote the night's publish record: it names what the metastore now serves
    record = read_record(cfg.storage.root, recommendations_table(DB), "2026-11-20")
    assert record["location"] == partition_location(spark, recommendations_table(DB), "2026-11-20")
    assert record["location"] != first_record["location"]
    assert (record["rows"], record["model_version"], record["table"]) == (10, "v1", recommendations_table(DB))
    # ... and the Parquet files it points at hold exactly the Spark-visible row
    spark_row = published(spark, "2026-11-20").where(F.col(S.USER_ID) == "u3").first().asDict(recursive=True)
    file_row = read_user(record, "u3")
    assert {k: file_row[k] for k in ("user_id", "source", "model_version")} == \
        {k: spark_row[k] for k in ("user_id", "source", "model_version")}
    assert [(r["rank"], r["item_id"]) for r in file_row["recs"]] == \
        [(r["rank"], r["item_id"]) for r in spark_row["recs"]]
    assert read_user(record, "nobody") is None


def test_failed_check_keeps_the_published_partition(spark, cfg, db, model_dir, index):
    rows = [(f"u{k}", [1 + k % 6]) for k in range(10)]
    scored = run_scoring(spark, model_dir, index, rows).cache()
    users, vocab = users_df(spark, rows), vocabulary(spark, index)
    publish(spark, cfg, scored, users, vocab, "2026-11-22")
    location = partition_location(spark, recommendations_table(DB), "2026-11-22")
    before = sorted(map(str, published(spark, "2026-11-22").collect()))
    broken = scored.union(scored.limit(1))  # a duplicated user
    with pytest.raises(PublishError, match="duplicate_users: 1 rows"):
        publish(spark, cfg, broken, users, vocab, "2026-11-22")
    missing = scored.where(F.col(S.USER_ID) != "u3")
    with pytest.raises(PublishError, match="missing_users: 1 rows"):
        publish(spark, cfg, missing, users, vocab, "2026-11-22")
    seen_recommended = scored.withColumn("recs", F.array(F.struct(F.lit(1).alias("rank"), F.lit("i1").alias("item_id"),
                                                                  F.lit(9.0).cast("float").alias("score")),
                                                        F.col("recs")[1], F.col("recs")[2]))
    with pytest.raises(PublishError, match="seen_items_recommended"):
        publish(spark, cfg, seen_recommended, users, vocab, "2026-11-22")
    assert partition_location(spark, recommendations_table(DB), "2026-11-22") == location
    assert read_record(cfg.storage.root, recommendations_table(DB), "2026-11-22")["location"] == location
    assert sorted(map(str, published(spark, "2026-11-22").collect())) == before


def test_row_count_band_refuses_an_abnormally_small_night(spark, cfg, db, model_dir, index):
    rows = [(f"u{k}", [1 + k % 6]) for k in range(10)]
    scored = run_scoring(spark, model_dir, index, rows).cache()
    vocab = vocabulary(spark, index)
    publish(spark, cfg, scored, users_df(spark, rows), vocab, "2026-11-23")
    few = rows[:2]
    with pytest.raises(PublishError, match="outside the configured band"):
        publish(spark, cfg, run_scoring(spark, model_dir, index, few), users_df(spark, few), vocab, "2026-11-24")
    assert published(spark, "2026-11-24").count() == 0
    # the twin: a wide band lets the same night through
    publish(spark, cfg, run_scoring(spark, model_dir, index, few), users_df(spark, few), vocab, "2026-11-24",
            band=(0.1, 10))
    assert published(spark, "2026-11-24").count() == 2


def test_crash_after_staging_leaves_the_previous_partition_and_a_rerun_completes(spark, cfg, db, model_dir, index):
    rows = [(f"u{k}", [1 + k % 6]) for k in range(10)]
    scored = run_scoring(spark, model_dir, index, rows).cache()
    users, vocab = users_df(spark, rows), vocabulary(spark, index)
    publish(spark, cfg, scored, users, vocab, "2026-11-25", band=(0.1, 10))
    before = sorted(map(str, published(spark, "2026-11-25").collect()))
    stage(spark, DB, night(spark, scored.limit(3), "2026-11-25"), "2026-11-25", 2)  # the run dies here
    assert sorted(map(str, published(spark, "2026-11-25").collect())) == before
    publish(spark, cfg, scored, users, vocab, "2026-11-25", band=(0.1, 10))
    assert published(spark, "2026-11-25").count() == 10


# --- gate ------------------------------------------------------------------------------------------

def test_gate_decisions():
    prod = {"ndcg@10": 0.30, "hr@10": 0.50}
    assert decide({"ndcg@10": 0.29, "hr@10": 0.49}, prod, ["ndcg@10", "hr@10"], 0.05, False)[0]
    refused, reason = decide({"ndcg@10": 0.20, "hr@10": 0.55}, prod, ["ndcg@10", "hr@10"], 0.05, False)
    assert not refused and "ndcg@10 0.2000 is below 0.2850" in reason
    missing, reason = decide({"hr@10": 0.9}, prod, ["ndcg@10", "hr@10"], 0.05, False)
    assert not missing and "fail closed" in reason
    # against the bootstrap baseline there is no tolerance
    assert not decide({"ndcg@10": 0.29, "hr@10": 0.5}, prod, ["ndcg@10", "hr@10"], 0.05, True)[0]


def test_regressed_model_is_refused_from_offline_metrics(spark, cfg):
    from recsys_spark.evaluation import BASELINE_VERSION, write_offline_metrics
    rows = []
    for version, name, ndcg in (("prod", "model", 0.30), ("bad", "model", 0.10), ("good", "model", 0.31),
                                (BASELINE_VERSION, "most_popular", 0.05)):
        for metric, value in (("ndcg", ndcg), ("hr", ndcg * 2)):
            rows.append((version, name, "leave_last_out", "test", metric, 10, value, "2026-11-18"))
    write_offline_metrics(spark, cfg.storage.database, pd.DataFrame(rows, columns=[
        "model_version", "name", "protocol", "split", "metric", "k", "value", "ds"]), "2026-11-18")
    assert not evaluate_gate(spark, cfg, "2026-11-18", "bad", "prod").approved
    assert evaluate_gate(spark, cfg, "2026-11-18", "good", "prod").approved
    assert evaluate_gate(spark, cfg, "2026-11-18", "bad", None).approved  # first model: beats popularity
    assert not evaluate_gate(spark, cfg, "2026-11-18", "unknown", "prod").approved  # no metrics: fail closed


def test_a_model_newer_than_the_night_only_recommends_the_nights_items(spark, model_dir, index):
    """Re-scoring an old night with today's model: items added since that night are never listed."""
    old_night = index.head(4)  # the model knows 6 items, this night's vocabulary only 4
    (row,) = run_scoring(spark, model_dir, old_night, [("u1", [1])]).collect()
    assert [r.item_id for r in row.recs] == ["i2", "i3", "i4"]


def test_spark_scores_of_a_transition_model_equal_the_evaluators(spark, tmp_path, index):
    """Spark scoring and offline evaluation rank by the same score_next, transition term included."""
    from recsys_spark.evaluation import model_scorer
    torch.manual_seed(1)
    model = LSTMRecommender(N_MODEL_ITEMS, embedding_dim=4, hidden_size=4, transition_pairs=3)
    model.set_transitions(torch.tensor([1, 1, 2]), torch.tensor([5, 6, 4]), torch.tensor([3, 1, 2]))
    with torch.no_grad():
        model.transition_gate.bias.fill_(2.0)
    version = "v-transitions"  # workers cache models by version: not the fixture's "v1"
    save_model(model, tmp_path / "models" / version)
    rows = [("u1", [2, 1]), ("u2", [3, 2]), ("u3", [4, 3, 1])]
    popular, pop_scores = popularity_list(index, set(), 13)
    spec = ScoringSpec(k=3, mask_seen=True, min_history=1, batch_size=2, threads=1)
    shared = broadcast_scoring(spark.sparkContext, ModelPayload.from_artifact(version, tmp_path / "models" / version),
                               id_lookup(index), popular, pop_scores, np.zeros(0, dtype=np.int64))
    scored = score_users(scoring_inputs(sequences(spark, rows), window_length=4).repartition(2), shared, spec)
    got = {r.user_id: [x.item_id for x in r.recs] for r in scored.collect()}
    score = model_scorer(tmp_path, version, N_MODEL_ITEMS)
    inputs = torch.tensor([[0] * (4 - len(items)) + items for _, items in rows])
    scores = score(inputs, torch.zeros(3, 1, dtype=torch.long))
    for row, (user, items) in enumerate(rows):
        scores[row, items] = -float("inf")
        assert got[user] == [f"i{int(i)}" for i in torch.topk(scores[row], 3).indices]
    # the transition term decides here: without it the lists differ
    with torch.no_grad():
        h = model.last_hidden(inputs)
        plain = h @ model.item_embedding.weight.t() + model.item_bias
        plain[:, 0] = -float("inf")
    for row, (_, items) in enumerate(rows):
        plain[row, items] = -float("inf")
    assert [torch.topk(plain[r], 3).indices.tolist() for r in range(3)] != \
        [torch.topk(scores[r], 3).indices.tolist() for r in range(3)]
