"""Similar items: for every item of a night's vocabulary, the k items most likely to come next after
it, from the production model, published to ``similar_items`` like the per-user lists.

Scoring rules (``similar.rule``), all from the model alone, so the table, the evaluator and a
re-run agree:

* ``next``: the model's next-item scores after the one-item history ``[i]`` (:meth:`score_next`,
  the gated transition term included): what the model predicts a visitor of ``i`` looks at next;
* ``cosine``: cosine of the (output-tied) item embeddings: items the model places alike;
* ``blend``: log-softmax of ``next`` plus ``blend_weight`` x ``cosine``.

Every rule gives the item itself and padding -inf: a list never holds its own item. The table is
computed in Spark over blocks of items (``mapInPandas``: the model travels once as broadcast bytes),
ranked by score descending then item index ascending, so it never depends on partitioning. Items
newer than the model (a refused candidate leaves an older production model) get the popularity list.

The ``item_to_item`` evaluation protocol ranks each leave-last-out test target with the list of the
user's last item only, for the model's rule, last-item transitions and ALS item-factor cosine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import baselines as B
from recsys_spark import schemas as S
from recsys_spark.build import item_index_version
from recsys_spark.config import Config, ConfigError
from recsys_spark.errors import DataError
from recsys_spark.evaluation import (BASELINE_VERSION, MODEL_NAME, TEST, EvalResult, Queries, Scorer,
                                     evaluate)
from recsys_spark.publish import Contract, check_lists, publish_night
from recsys_spark.published import SIMILAR_ITEMS
from recsys_spark.scoring import (GENERATED_AT, MODEL_VERSION, REC_STRUCT, ModelPayload, broadcast_scoring,
                                  id_lookup, popularity_list, rec_lists, score_in_batches)
from recsys_spark.sequences import day_end
from recsys_spark.serve import resolve_model

NEXT = "next"
COSINE = "cosine"
BLEND = "blend"
RULES = (NEXT, COSINE, BLEND)
ITEM_TO_ITEM = "item_to_item"
"""``protocol`` of the similar-items rows in ``offline_metrics``."""

SIMILAR = "similar"
SIMILAR_SCORED_SCHEMA = T.StructType([
    T.StructField(S.ITEM_ID, T.StringType(), False),
    T.StructField(SIMILAR, T.ArrayType(REC_STRUCT, False), False),
    T.StructField(MODEL_VERSION, T.StringType(), False),
])
SIMILAR_ITEMS_SCHEMA = T.StructType(SIMILAR_SCORED_SCHEMA.fields + [
    T.StructField(GENERATED_AT, T.TimestampType(), False),
    T.StructField(S.DS, T.StringType(), False),
])
SIMILAR_CONTRACT = Contract(SIMILAR_ITEMS, SIMILAR_ITEMS_SCHEMA, S.ITEM_ID, SIMILAR, "items")


def check_rule(rule: str, setting: str = "similar.rule") -> None:
    if rule not in RULES:
        raise ConfigError(f"{setting}: unknown rule {rule!r} (known: {', '.join(RULES)})")


def similar_scores(model: torch.nn.Module, items: torch.Tensor, rule: str, blend_weight: float) -> torch.Tensor:
    """[B, num_items] scores of every item as similar to each of ``items`` [B] (indices the model
    knows) under ``rule``; the item itself and padding get -inf."""
    items = items.long()
    if rule in (NEXT, BLEND):
        following = model.score_next(items.unsqueeze(1))
    if rule in (COSINE, BLEND):
        unit = torch.nn.functional.normalize(model.item_embedding.weight, dim=1)
        cosine = unit[items] @ unit.t()
    if rule == NEXT:
        scores = following
    elif rule == COSINE:
        scores = cosine
    elif rule == BLEND:
        scores = torch.log_softmax(following, dim=1) + blend_weight * cosine
    else:
        check_rule(rule)
    scores[:, S.PADDING_IDX] = -math.inf
    return scores.scatter(1, items.unsqueeze(1), -math.inf)


# --- the table -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimilarSpec:
    k: int
    rule: str
    blend_weight: float
    batch_size: int
    threads: int


def score_similar(items: DataFrame, payload: ModelPayload, item_ids: np.ndarray, popular: np.ndarray,
                  popular_scores: np.ndarray, blocked: np.ndarray, spec: SimilarSpec) -> DataFrame:
    """(item_id, item_idx) rows -> (item_id, similar, model_version): each item's top-k under
    ``spec.rule``, never itself, padding, a ``blocked`` index or an index outside ``item_ids``
    (``item_ids[idx]`` maps indices back to ids). Items the model does not know get ``popular``
    (indices by popularity, with ``popular_scores``) minus themselves."""
    def batch(frame, model, ids, pop, pop_scores, block, version):
        return _similar_batch(frame, model, ids, pop, pop_scores, block, spec, version)

    shared = broadcast_scoring(items.sparkSession.sparkContext, payload, item_ids, popular, popular_scores, blocked)
    return score_in_batches(items.select(S.ITEM_ID, S.ITEM_IDX), shared, spec.batch_size, spec.threads,
                            batch, SIMILAR_SCORED_SCHEMA)


def _similar_batch(frame: pd.DataFrame, model, ids: np.ndarray, pop: np.ndarray, pop_scores: np.ndarray,
                   block: np.ndarray, spec: SimilarSpec, version: str) -> pd.DataFrame:
    idx = frame[S.ITEM_IDX].to_numpy(np.int64)
    n_model = model.num_items
    known = idx < n_model
    lists: list[list[dict]] = [[] for _ in range(len(frame))]
    rows = np.flatnonzero(known)
    if len(rows):
        with torch.inference_mode():
            scores = similar_scores(model, torch.from_numpy(idx[rows]), spec.rule, spec.blend_weight).float()
            scores[:, torch.from_numpy(block[block < n_model])] = -math.inf
            scores[:, len(ids):] = -math.inf  # items newer than this night's vocabulary (re-running an old night)
            top = B.top_k_indices(scores, spec.k)
            best = scores.gather(1, top)
        for pos, row in zip(rows, rec_lists(ids, top.numpy(), best.numpy())):
            lists[pos] = row
    for pos in np.flatnonzero(~known):
        keep = np.flatnonzero(pop != idx[pos])[:spec.k]
        lists[pos] = rec_lists(ids, [pop[keep]], [pop_scores[keep]])[0]
    return pd.DataFrame({S.ITEM_ID: frame[S.ITEM_ID].to_numpy(), SIMILAR: lists, MODEL_VERSION: version})


def check_similar(staged: DataFrame, vocabulary: DataFrame, k: int) -> dict[str, int]:
    """Violations of the table's contract (all must be 0 to publish): one row per ``vocabulary`` item
    (item_id), k distinct vocabulary items per list, ranks 1..k, scores non-increasing, never the
    row's own item."""
    return check_lists(staged, SIMILAR_CONTRACT, vocabulary.select(S.ITEM_ID), vocabulary, k,
                       {"self_listed": F.exists(SIMILAR, lambda r: r[S.ITEM_ID] == F.col(S.ITEM_ID))})


def similar_night(spark: SparkSession, cfg: Config, ds: str, model_version: Optional[str] = None) -> dict:
    """Compute and publish the ``ds`` partition of ``similar_items`` with the production (or a given)
    model: one row per item of the night's vocabulary, blocklisted items neither listed nor listing."""
    sim, db, blocklist = cfg.similar, cfg.storage.database, cfg.score.blocklist
    check_rule(sim.rule)
    version, artifact = resolve_model(cfg, model_version)
    index_df = item_index_version(spark, db, ds)
    index = index_df.select(S.ITEM_ID, S.ITEM_IDX, S.COUNT).toPandas()
    blocked = set(index.loc[index[S.ITEM_ID].isin(blocklist), S.ITEM_IDX].tolist())
    if len(index) - len(blocked) <= sim.k:
        raise DataError(f"similar_items for {ds}: similar.k={sim.k} needs more than {sim.k} unblocked items, "
                        f"the night's vocabulary has {len(index) - len(blocked)}")
    vocabulary = (index_df.where(~F.col(S.ITEM_ID).isin(blocklist)) if blocklist else index_df) \
        .select(S.ITEM_ID, S.ITEM_IDX).cache()
    popular, popular_scores = popularity_list(index, blocked, sim.k + 1)
    spec = SimilarSpec(k=sim.k, rule=sim.rule, blend_weight=sim.blend_weight, batch_size=sim.batch_size,
                       threads=int(spark.conf.get("spark.task.cpus", "1")))
    scored = score_similar(vocabulary.repartition(sim.partitions, S.ITEM_ID),
                           ModelPayload.from_artifact(version, artifact), id_lookup(index), popular,
                           popular_scores, np.array(sorted(blocked), dtype=np.int64), spec)
    # generated_at is the night's logical time, not the wall clock: a re-run reproduces the partition.
    rows = scored.withColumn(GENERATED_AT, F.lit(day_end(ds))).withColumn(S.DS, F.lit(ds))
    result = publish_night(spark, db, SIMILAR_CONTRACT, rows, ds, sim.partitions,
                           lambda staged: check_similar(staged, vocabulary, sim.k),
                           storage_root=cfg.storage.root, model_version=version)
    vocabulary.unpersist()
    return {"model_version": version, "rule": sim.rule, **result}


# --- evaluation ------------------------------------------------------------------------------------

def one_item_queries(queries: Queries) -> Queries:
    """The item-to-item view of ``queries``: each input cut to its last item, which is also the only
    item masked as a competitor (a target equal to it stays a miss: no list holds its own item)."""
    last = queries.inputs[:, -1:].copy()
    return Queries(queries.key, last, queries.targets, last.copy())


def _without_self(score_batch: Scorer) -> Scorer:
    def scores(inputs: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        return score_batch(inputs, seen).scatter(1, inputs[:, -1:], -math.inf)
    return scores


def model_rule_scorer(model: torch.nn.Module, rule: str, blend_weight: float, popularity: np.ndarray) -> Scorer:
    """The table's scores as an evaluator scorer over ``len(popularity)`` items: ``rule`` for items
    the model knows, popularity (the table's fallback) for the others."""
    check_rule(rule, "similar.compare_rules")
    known, num_items = model.num_items, len(popularity)
    if known > num_items:
        raise ValueError(f"the model knows {known} item indices, the night's dataset only {num_items}")
    fallback = B.exact_float32(torch.as_tensor(popularity).unsqueeze(0))

    @torch.no_grad()
    def score_batch(inputs: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        items = inputs[:, -1]
        inside = items < known
        scores = similar_scores(model, torch.where(inside, items, 0), rule, blend_weight)
        scores = torch.nn.functional.pad(scores, (0, num_items - known), value=-math.inf)
        return torch.where(inside.unsqueeze(1), scores, fallback)

    return score_batch


def evaluate_item_to_item(queries: Queries, data: B.FitData, fitted: dict, models: dict[str, Path],
                          cfg: Config) -> list[EvalResult]:
    """The ``item_to_item`` protocol on ``queries`` (leave-last-out test): each model of ``models``
    (version -> artifact) under the shipped rule (name ``model``) and ``similar.compare_rules``
    (``model_<rule>``), and the fitted ``transitions`` and ``als`` baselines of ``fitted`` where
    present (ALS as item-factor cosine), on the same fit data."""
    from recsys_spark.model import load_model

    ev, sim = cfg.evaluate, cfg.similar
    check_rule(sim.rule)
    one = one_item_queries(queries)
    scorers: dict[tuple[str, str], Scorer] = {}
    if B.TRANSITIONS in fitted:
        scorers[(B.TRANSITIONS, BASELINE_VERSION)] = _without_self(fitted[B.TRANSITIONS].score_batch)
    if B.ALS in fitted:
        als = fitted[B.ALS]
        scorers[(B.ALS, BASELINE_VERSION)] = _without_self(lambda inputs, seen: als.item_cosine(inputs[:, -1]))
    for version, directory in models.items():
        model = load_model(directory)
        for rule in dict.fromkeys([sim.rule, *sim.compare_rules]):
            name = MODEL_NAME if rule == sim.rule else f"{MODEL_NAME}_{rule}"
            scorers[(name, version)] = model_rule_scorer(model, rule, sim.blend_weight, data.popularity)
    results = []
    for (name, version), scorer in scorers.items():
        result = evaluate(scorer, one, data.popularity, name=name, protocol=ITEM_TO_ITEM, split=TEST,
                          ks=ev.ks, mask_seen=True, batch_size=ev.batch_size)
        result.model_version = version
        results.append(result)
    return results
