"""Similar items: the lists' contract (no self, ties, blocklist, fallback), the rules, the publish
checks and their failing twins, atomic and idempotent publishing of the stage, ``recsys similar``,
and the item_to_item evaluation protocol."""
import dataclasses
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
import torch
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark import baselines as B
from recsys_spark import schemas as S
from recsys_spark.config import ConfigError, SimilarConfig, StorageConfig
from recsys_spark.errors import DataError
from recsys_spark.evaluation import (BASELINE_VERSION, Queries, metric_rows, read_offline_metrics,
                                     write_offline_metrics)
from recsys_spark.model import LSTMRecommender, save_model
from recsys_spark.publish import PublishError, partition_location, publish_night
from recsys_spark.published import SIMILAR_ITEMS, read_record
from recsys_spark.registry import models_root, register, set_production
from recsys_spark.scoring import GENERATED_AT, ModelPayload, id_lookup, popularity_list
from recsys_spark.similar import (BLEND, COSINE, ITEM_TO_ITEM, NEXT, SIMILAR, SIMILAR_CONTRACT,
                                  SIMILAR_SCORED_SCHEMA, SimilarSpec, check_similar, evaluate_item_to_item,
                                  one_item_queries, score_similar, similar_night, similar_scores)
from recsys_spark.tables import ensure_table, overwrite_partitions

DB = "similar_test"
NIGHT = "2026-11-20"
N_MODEL_ITEMS = 7  # the model knows indices 1..6; 7 and 8 are newer than the model
TOTAL = 285  # sum of the index counts below


@pytest.fixture(scope="module")
def bias_model():
    """Scores after any one-item history are exactly the item bias (zero embeddings), ties on
    purpose (items 2 and 3 share a score)."""
    torch.manual_seed(0)
    model = LSTMRecommender(N_MODEL_ITEMS, embedding_dim=4, hidden_size=4)
    with torch.no_grad():
        model.item_embedding.weight.zero_()
        model.item_bias.copy_(torch.tensor([0.0, 5.0, 4.0, 4.0, 3.0, 2.0, 1.0]))
    return model.eval()


@pytest.fixture(scope="module")
def model_dir(bias_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("similar_model") / "v1"
    save_model(bias_model, directory)
    return directory


@pytest.fixture(scope="module")
def index():
    return pd.DataFrame({S.ITEM_ID: [f"i{k}" for k in range(1, 9)], S.ITEM_IDX: list(range(1, 9)),
                         S.COUNT: [10, 50, 40, 30, 20, 60, 70, 5]})


def run_similar(spark, model_dir, index, k=3, partitions=2, blocked=(), rule=NEXT):
    vocabulary = spark.createDataFrame(index[~index[S.ITEM_IDX].isin(blocked)][[S.ITEM_ID, S.ITEM_IDX]])
    popular, pop_scores = popularity_list(index, set(blocked), k + 1)
    spec = SimilarSpec(k=k, rule=rule, blend_weight=1.0, batch_size=2, threads=1)
    return score_similar(vocabulary.repartition(partitions), ModelPayload.from_artifact("v1", model_dir),
                         id_lookup(index), popular, pop_scores, np.array(sorted(blocked), dtype=np.int64), spec)


def lst(*items_scores):
    return [{"rank": r + 1, "item_id": i, "score": s} for r, (i, s) in enumerate(items_scores)]


def test_lists_never_hold_the_item_ties_go_by_index_and_new_items_get_popularity(spark, model_dir, index):
    got = run_similar(spark, model_dir, index)
    expected = spark.createDataFrame([
        ("i1", lst(("i2", 4.0), ("i3", 4.0), ("i4", 3.0)), "v1"),  # itself (bias 5) excluded
        ("i2", lst(("i1", 5.0), ("i3", 4.0), ("i4", 3.0)), "v1"),
        ("i3", lst(("i1", 5.0), ("i2", 4.0), ("i4", 3.0)), "v1"),
        ("i4", lst(("i1", 5.0), ("i2", 4.0), ("i3", 4.0)), "v1"),
        ("i5", lst(("i1", 5.0), ("i2", 4.0), ("i3", 4.0)), "v1"),
        ("i6", lst(("i1", 5.0), ("i2", 4.0), ("i3", 4.0)), "v1"),
        # unknown to the model: the most popular items (count share) minus itself
        ("i7", lst(("i6", 60 / TOTAL), ("i2", 50 / TOTAL), ("i3", 40 / TOTAL)), "v1"),
        ("i8", lst(("i7", 70 / TOTAL), ("i6", 60 / TOTAL), ("i2", 50 / TOTAL)), "v1"),
    ], SIMILAR_SCORED_SCHEMA)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_blocklisted_items_neither_listed_nor_listing(spark, model_dir, index):
    got = {r.item_id: [x.item_id for x in r.similar] for r in run_similar(spark, model_dir, index, blocked=[2, 6]).collect()}
    assert "i2" not in got and "i6" not in got
    assert got["i1"] == ["i3", "i4", "i5"] and got["i7"] == ["i3", "i4", "i5"]
    assert all({"i2", "i6"}.isdisjoint(items) for items in got.values())


def test_output_independent_of_partitioning(spark, model_dir, index):
    assert_df_equality(run_similar(spark, model_dir, index, partitions=1),
                       run_similar(spark, model_dir, index, partitions=5), ignore_row_order=True)


def test_rules_score_next_cosine_and_their_blend_and_exclude_self():
    torch.manual_seed(3)
    model = LSTMRecommender(5, embedding_dim=2, hidden_size=4).eval()
    with torch.no_grad():
        model.item_embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [-1.0, 0.0]]))
    items = torch.tensor([1, 3])
    with torch.no_grad():
        cosine = similar_scores(model, items, COSINE, 1.0)
        following = similar_scores(model, items, NEXT, 1.0)
        blend = similar_scores(model, items, BLEND, 0.5)
        raw_next = model.score_next(items.unsqueeze(1))
    for scores in (cosine, following, blend):
        assert scores[0, 1] == scores[1, 3] == scores[0, 0] == -math.inf  # itself and padding
    assert torch.argsort(cosine[0, 2:], descending=True).tolist() == [0, 1, 2]  # i2 ~ i1, i4 opposite
    assert cosine[0, 4] == pytest.approx(-1.0)
    assert torch.allclose(following[:, 2:][following[:, 2:].isfinite()], raw_next[:, 2:][following[:, 2:].isfinite()])
    unit = torch.nn.functional.normalize(model.item_embedding.weight, dim=1)
    expected = torch.log_softmax(raw_next, dim=1) + 0.5 * unit[items] @ unit.t()
    assert torch.allclose(blend[0, 2:], expected[0, 2:], atol=1e-6)
    with pytest.raises(ConfigError, match="similar.rule"):
        similar_scores(model, items, "nearest", 1.0)


# --- the publish checks ------------------------------------------------------------------------------

def staged_rows(spark, rows):
    return spark.createDataFrame(rows, SIMILAR_SCORED_SCHEMA).withColumn(GENERATED_AT, F.lit(dt.datetime(2026, 11, 21)))


GOOD = [("i1", lst(("i2", 0.9), ("i3", 0.5)), "v1"), ("i2", lst(("i1", 0.8), ("i3", 0.8)), "v1"),
        ("i3", lst(("i1", 0.7), ("i2", 0.1)), "v1")]
BAD = {  # the check each broken table must trip
    "duplicate_items": GOOD + [GOOD[0]],
    "missing_items": GOOD[:2],
    "unexpected_items": GOOD + [("i9", lst(("i1", 0.1), ("i2", 0.0)), "v1")],
    "self_listed": [("i1", lst(("i1", 0.9), ("i3", 0.5)), "v1")] + GOOD[1:],
    "wrong_list_length": [("i1", lst(("i2", 0.9)), "v1")] + GOOD[1:],
    "repeated_items": [("i1", lst(("i2", 0.9), ("i2", 0.5)), "v1")] + GOOD[1:],
    "bad_ranks": [("i1", [{"rank": 2, "item_id": "i2", "score": 0.9}, {"rank": 1, "item_id": "i3", "score": 0.5}], "v1")] + GOOD[1:],
    "increasing_scores": [("i1", lst(("i2", 0.5), ("i3", 0.9)), "v1")] + GOOD[1:],
    "bad_scores": [("i1", lst(("i2", float("inf")), ("i3", 0.5)), "v1")] + GOOD[1:],
    "unknown_items": [("i1", lst(("i2", 0.9), ("i7", 0.5)), "v1")] + GOOD[1:],
}


@pytest.fixture(scope="module")
def small_vocabulary(spark):
    return spark.createDataFrame([(f"i{k}", k) for k in (1, 2, 3)], f"{S.ITEM_ID} string, {S.ITEM_IDX} int")


def test_checks_pass_a_good_table(spark, small_vocabulary):
    assert set(check_similar(staged_rows(spark, GOOD), small_vocabulary, 2).values()) == {0}


@pytest.mark.parametrize("violation", BAD)
def test_each_check_fails_on_its_bad_table(spark, small_vocabulary, violation):
    found = {name: n for name, n in check_similar(staged_rows(spark, BAD[violation]), small_vocabulary, 2).items() if n}
    assert violation in found, found


# --- the stage: publish, re-run, failed check ----------------------------------------------------------

@pytest.fixture(scope="module")
def stage_cfg(spark, cfg, model_dir, index, tmp_path_factory):
    """A night as build-sequences and the gate leave it: item_index version NIGHT, model v1 in production."""
    root = tmp_path_factory.mktemp("similar_stage")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    table = f"{DB}.item_index"
    ensure_table(spark, table, S.ITEM_INDEX_SCHEMA, partition_by=(S.VERSION,))
    rows = index.assign(**{S.FIRST_SEEN_DS: "2026-11-01", S.VERSION: NIGHT})[S.ITEM_INDEX_SCHEMA.fieldNames()]
    overwrite_partitions(spark.createDataFrame(rows, S.ITEM_INDEX_SCHEMA), table)
    register(models_root(root), "v1", {}, artifact=str(model_dir))
    set_production(models_root(root), "v1")
    return dataclasses.replace(cfg, storage=StorageConfig(database=DB, root=str(root)),
                               similar=SimilarConfig(k=3, partitions=2, batch_size=2),
                               score=dataclasses.replace(cfg.score, blocklist=["i6"]))


def published(spark):
    return spark.table(f"{DB}.{SIMILAR_ITEMS}").where(F.col(S.DS) == NIGHT)


def test_stage_publishes_one_row_per_item_and_a_rerun_gives_the_same_table(spark, stage_cfg):
    first = similar_night(spark, stage_cfg, NIGHT)
    assert (first["rows"], first["model_version"], first["rule"]) == (7, "v1", BLEND)  # 8 items, i6 blocked
    before = published(spark).toPandas()
    assert sorted(before[S.ITEM_ID]) == [f"i{k}" for k in (1, 2, 3, 4, 5, 7, 8)]
    assert before[GENERATED_AT].nunique() == 1  # the night's logical time, not the wall clock
    again = similar_night(spark, stage_cfg, NIGHT)
    assert again["location"] != first["location"] and again["replaced"] == first["location"]
    assert_df_equality(published(spark), spark.createDataFrame(before, published(spark).schema),
                       ignore_row_order=True, ignore_nullable=True)
    record = read_record(stage_cfg.storage.root, f"{DB}.{SIMILAR_ITEMS}", NIGHT)
    assert record["location"] == partition_location(spark, f"{DB}.{SIMILAR_ITEMS}", NIGHT) == again["location"]


def test_a_failed_check_keeps_the_published_partition(spark, stage_cfg):
    similar_night(spark, stage_cfg, NIGHT)
    location = partition_location(spark, f"{DB}.{SIMILAR_ITEMS}", NIGHT)
    before = sorted(map(str, published(spark).collect()))
    vocabulary = spark.createDataFrame([(f"i{k}", k) for k in (1, 2, 3, 4, 5, 7, 8)], f"{S.ITEM_ID} string, {S.ITEM_IDX} int")
    broken = published(spark).withColumn(SIMILAR, F.array_union(  # each item lists itself first
        F.array(F.struct(F.lit(1).alias("rank"), F.col(S.ITEM_ID).alias("item_id"), F.lit(99.0).cast("float").alias("score"))),
        F.slice(SIMILAR, 1, 2)))
    with pytest.raises(PublishError, match=r"similar_items for 2026-11-20 not published .*self_listed: 7 rows"):
        publish_night(spark, DB, SIMILAR_CONTRACT, broken, NIGHT, 2, lambda staged: check_similar(staged, vocabulary, 3),
                      storage_root=stage_cfg.storage.root, model_version="v1")
    assert partition_location(spark, f"{DB}.{SIMILAR_ITEMS}", NIGHT) == location
    assert read_record(stage_cfg.storage.root, f"{DB}.{SIMILAR_ITEMS}", NIGHT)["location"] == location
    assert sorted(map(str, published(spark).collect())) == before


def test_too_small_a_vocabulary_for_k_is_a_one_line_error(spark, stage_cfg):
    too_many = dataclasses.replace(stage_cfg, similar=SimilarConfig(k=7))
    with pytest.raises(DataError, match="similar.k=7 needs more than 7 unblocked items, the night's vocabulary has 7"):
        similar_night(spark, too_many, NIGHT)


def test_recsys_similar_prints_an_items_list(spark, stage_cfg, capsys):
    from jobs.similar import main
    similar_night(spark, stage_cfg, NIGHT)
    argv = ["--set", f"storage.root={stage_cfg.storage.root}", "--set", f"storage.database={DB}"]
    assert main(["--item", "i1", "--ds", NIGHT, *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"item i1, night {NIGHT}, model v1"
    assert [line.split()[:2] for line in lines[1:]] == [["1", "i2"], ["2", "i3"], ["3", "i4"]]
    assert main(["--item", "i6", *argv]) == 1  # blocked: no row (the latest night by default)
    assert capsys.readouterr().out.strip() == f"no similar items for item 'i6' on {NIGHT}"


# --- the item_to_item protocol ------------------------------------------------------------------------

def test_item_to_item_ranks_by_the_last_item_only_and_lands_under_its_protocol(spark, cfg, model_dir):
    """Transitions after 1: 2 (x2), 3 (x1); after 4: 5. Queries share the last item 1 but differ in
    history (the protocol ignores it); a target equal to its query item is a miss (no self)."""
    times = lambda n: [dt.datetime(2026, 11, 20)] * n  # noqa: E731
    fit = spark.createDataFrame([("a", [1, 2, 4, 5], times(4)), ("b", [1, 2, 3], times(3)), ("c", [1, 3, 6], times(3))],
                                f"{S.USER_ID} string, {S.ITEM_IDX} array<int>, {S.TS} array<timestamp>")
    data = B.prepare_fit_data(fit, N_MODEL_ITEMS)
    fitted = {B.TRANSITIONS: B.Transitions(data)}
    queries = Queries(key=np.array(["x", "y", "z", "w"]),
                      inputs=np.array([[0, 5, 1], [6, 3, 1], [0, 0, 1], [0, 2, 4]]),
                      targets=np.array([2, 3, 1, 5]), seen=np.array([[5, 1], [6, 3], [1, 0], [2, 4]]))
    one = one_item_queries(queries)
    assert one.inputs.tolist() == one.seen.tolist() == [[1], [1], [1], [4]]
    results = evaluate_item_to_item(queries, data, fitted, {"v1": model_dir}, dataclasses.replace(cfg, similar=SimilarConfig()))
    by_name = {(r.name, r.model_version): r for r in results}
    assert set(by_name) == {("transitions", BASELINE_VERSION), ("model", "v1")}
    transitions = by_name[("transitions", BASELINE_VERSION)]
    assert transitions.protocol == ITEM_TO_ITEM and transitions.split == "test"
    assert transitions.ranks[[0, 1, 3]].tolist() == [1, 2, 1]  # the same list for x and y
    assert transitions.ranks[2] == 6  # target 1 after item 1: below all 5 other items, never in 1's list
    rows = metric_rows(results, "2026-11-17")
    write_offline_metrics(spark, cfg.storage.database, rows, "2026-11-17")
    stored = read_offline_metrics(spark, cfg.storage.database, "2026-11-17", BASELINE_VERSION, protocol=ITEM_TO_ITEM,
                                  name="transitions")
    assert stored["hr@1"] == pytest.approx(0.5) and stored["n_queries@0"] == 4
    # the twin: the gate's protocol holds none of these rows
    assert read_offline_metrics(spark, cfg.storage.database, "2026-11-17", "v1") == {}
    data.sequences.unpersist()
