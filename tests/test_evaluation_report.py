"""End to end on a tiny night: jobs/evaluate.py over recsys.user_sequences writes offline_metrics rows,
a markdown report and non-empty PNG plots, keeps other model versions' rows, and scores a registered
LSTMRecommender through the model plug-in."""
import copy
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch
from pyspark.sql import functions as F

from jobs import evaluate as job
from recsys_spark import evaluation as E
from recsys_spark import schemas as S
from recsys_spark.build import USER_SEQUENCES
from recsys_spark.model import LSTMRecommender, save_model
from recsys_spark.registry import models_root, register, set_production
from recsys_spark.similar import ITEM_TO_ITEM
from recsys_spark.tables import ensure_table, overwrite_partitions, qualified

DS = "2026-11-26"
NUM_ITEMS = 9


@pytest.fixture(scope="module")
def night(spark, cfg, tmp_path_factory):
    """A copy of the session config with its own storage root, and one night of user sequences:
    10 users walking the item cycle 1..8 at different offsets, the last two events on ``DS``."""
    local = copy.deepcopy(cfg)
    local.storage.root = str(tmp_path_factory.mktemp("evaluate"))
    local.evaluate.baselines = ["most_popular", "transitions", "sknn"]
    local.evaluate.protocols = ["leave_last_out", "temporal"]
    local.evaluate.splits = ["test", "validation"]
    local.evaluate.ks = [1, 5, 10]
    end = dt.datetime.fromisoformat(DS) + dt.timedelta(hours=20)
    rows = []
    for u in range(10):
        items = [1 + (u + j) % 8 for j in range(6)]
        ts = [end - dt.timedelta(hours=h) for h in (120, 96, 72, 24, 1, 0)]
        rows.append((f"u{u}", items, ts, len(items), DS))
    table = qualified(local.storage.database, USER_SEQUENCES)
    ensure_table(spark, table, S.USER_SEQUENCES_SCHEMA)
    overwrite_partitions(spark.createDataFrame(rows, S.USER_SEQUENCES_SCHEMA), table)
    return local


def metrics_table(spark, cfg):
    return spark.table(qualified(cfg.storage.database, E.OFFLINE_METRICS)).where(F.col(S.DS) == DS)


def test_baselines_only_run_writes_rows_report_and_plots(spark, night):
    results, report = E.run_evaluation(spark, night, DS)
    # item_to_item rides on the leave-last-out test queries and their fitted baselines
    assert {(r.protocol, r.split) for r in results} == {
        (p, s) for p in (E.LEAVE_LAST_OUT, E.TEMPORAL) for s in (E.TEST, E.VALIDATION)} | {(ITEM_TO_ITEM, E.TEST)}
    transitions = next(r for r in results if r.name == "transitions" and r.protocol == E.LEAVE_LAST_OUT
                       and r.split == E.TEST)
    # the cycle is deterministic: the item after the last one is always next
    assert transitions.n_queries == 10 and transitions.metrics["hr@1"] == 1.0
    rows = metrics_table(spark, night)
    assert {r.model_version for r in rows.select("model_version").distinct().collect()} == {E.BASELINE_VERSION}
    metrics = {r.metric for r in rows.select("metric").distinct().collect()}
    assert metrics == {"hr", "ndcg", "mrr", "coverage", "popularity_pct", "n_queries", "n_skipped"}
    text = report.read_text()
    assert "## leave_last_out / test" in text and "## temporal / validation" in text and "| sknn |" in text
    plots = sorted(report.parent.glob(f"{report.stem}_*.png"))
    assert len(plots) == 5 and all(p.stat().st_size > 2000 for p in plots)  # one per (protocol, split)


def test_job_scores_a_registered_model_and_keeps_other_versions(spark, night):
    torch_model = LSTMRecommender(NUM_ITEMS, embedding_dim=8, hidden_size=8)
    for version in ("m1", "m2"):
        directory = models_root(night.storage.root) / version
        save_model(torch_model, directory)
        register(models_root(night.storage.root), version, {}, artifact=str(directory))
    overrides = [f"storage.root={night.storage.root}", "evaluate.baselines=[most_popular]",
                 "evaluate.protocols=[leave_last_out]", "evaluate.ks=[1,10]",
                 f"spark.warehouse_dir={night.spark.warehouse_dir}",
                 f"spark.metastore_dir={night.spark.metastore_dir}"]
    argv = ["--ds", DS, "--conf", "local"] + [a for o in overrides for a in ("--set", o)]
    assert job.main(argv + ["--model-version", "m1"]) == 0
    set_production(models_root(night.storage.root), "m1")
    assert job.main(argv + ["--model-version", "m2", "--with-production"]) == 0
    rows = metrics_table(spark, night)
    versions = {r.model_version for r in rows.select("model_version").distinct().collect()}
    assert versions == {E.BASELINE_VERSION, "m1", "m2"}
    m1 = E.read_offline_metrics(spark, night.storage.database, DS, "m1")
    assert m1["n_queries@0"] == 10 and 0.0 <= m1["ndcg@10"] <= 1.0
    # an untrained model is still ranked over the same queries; same weights, same numbers
    assert m1 == E.read_offline_metrics(spark, night.storage.database, DS, "m2")
    report = Path(night.storage.root) / "reports" / f"ds={DS}" / "evaluate_m2_m1.md"
    assert "| model m2 |" in report.read_text() and "| model m1 |" in report.read_text()
    # a run of m2 alone replaces m2's rows and keeps m1's
    assert job.main(argv + ["--model-version", "m2"]) == 0
    assert E.read_offline_metrics(spark, night.storage.database, DS, "m1") == m1


def test_model_scorer_with_an_older_vocabulary_scores_new_items_minus_inf(night):
    directory = models_root(night.storage.root) / "old"
    save_model(LSTMRecommender(5, embedding_dim=4, hidden_size=4), directory)
    scorer = E.model_scorer(night.storage.root, "old", NUM_ITEMS)
    scores = scorer(torch.tensor([[0, 2, 7, 3]]), torch.zeros(1, 1, dtype=torch.long))
    assert scores.shape == (1, NUM_ITEMS) and torch.isinf(scores[0, 5:]).all()
    assert E.known_items_only(torch.tensor([[0, 2, 7, 3]]), 5).tolist() == [[0, 0, 2, 3]]
    with pytest.raises(ValueError, match="newer vocabulary"):
        E.model_scorer(night.storage.root, "old", 4)
    assert np.isfinite(scores[0, 1:5].numpy()).all()
