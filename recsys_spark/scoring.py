"""Nightly scoring: every user's top-k from the LSTM in Spark (``mapInPandas``), popularity fallback.

The model travels once as broadcast bytes and is loaded once per Python worker (cached by version);
inference is batched under ``torch.inference_mode`` with as many torch threads as the task has cores.
Ranking is by score descending, then item index ascending, so ties never depend on partitioning.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd
import torch
from pyspark import Broadcast, SparkContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import schemas as S
from recsys_spark.baselines import top_k_indices
from recsys_spark.evaluation import known_items_only

RECS = "recs"
RANK = "rank"
SCORE = "score"
SOURCE = "source"
MODEL_VERSION = "model_version"
GENERATED_AT = "generated_at"
SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"

REC_STRUCT = T.StructType([T.StructField(RANK, T.IntegerType(), False),
                           T.StructField(S.ITEM_ID, T.StringType(), False),
                           T.StructField(SCORE, T.FloatType(), False)])
SCORED_SCHEMA = T.StructType([
    T.StructField(S.USER_ID, T.StringType(), False),
    T.StructField(RECS, T.ArrayType(REC_STRUCT, False), False),
    T.StructField(SOURCE, T.StringType(), False),
    T.StructField(MODEL_VERSION, T.StringType(), False),
])
RECOMMENDATIONS_SCHEMA = T.StructType(SCORED_SCHEMA.fields + [
    T.StructField(GENERATED_AT, T.TimestampType(), False),
    T.StructField(S.DS, T.StringType(), False),
])

_WORKER_MODELS: dict[str, torch.nn.Module] = {}
"""Per Python worker: models already deserialised, by version (workers are reused across tasks)."""


@dataclass(frozen=True)
class ModelPayload:
    """What a worker needs to rebuild the model: its version, architecture and weights bytes."""
    version: str
    architecture: dict
    weights: bytes

    @classmethod
    def from_artifact(cls, version: str, directory: str | Path) -> "ModelPayload":
        from recsys_spark.model import ARCHITECTURE_FILE, WEIGHTS_FILE
        directory = Path(directory)
        return cls(version, json.loads((directory / ARCHITECTURE_FILE).read_text()),
                   (directory / WEIGHTS_FILE).read_bytes())

    def load(self) -> torch.nn.Module:
        if self.version not in _WORKER_MODELS:
            from recsys_spark.model import LSTMRecommender
            model = LSTMRecommender(**self.architecture)
            model.load_state_dict(torch.load(io.BytesIO(self.weights), map_location="cpu", weights_only=True))
            _WORKER_MODELS.clear()  # keep one version per worker: a new night's model replaces the old
            _WORKER_MODELS[self.version] = model.eval()
        return _WORKER_MODELS[self.version]


@dataclass(frozen=True)
class ScoringSpec:
    k: int
    mask_seen: bool
    min_history: int
    batch_size: int
    threads: int


def scoring_inputs(sequences: DataFrame, window_length: int, carry: tuple[str, ...] = ()) -> DataFrame:
    """(user_id, input = last L items left-padded with 0, seen = every item of the history, *carry)."""
    items = F.col(S.ITEM_IDX)
    tail = F.slice(items, F.greatest(F.size(items) - window_length + 1, F.lit(1)), window_length)
    return sequences.select(
        S.USER_ID, *carry,
        F.concat(F.array_repeat(F.lit(0), F.lit(window_length) - F.size(tail)), tail).cast("array<int>").alias(S.INPUT),
        F.array_distinct(items).cast("array<int>").alias(S.SEEN))


def _stack(column: pd.Series, width: int | None = None) -> np.ndarray:
    width = width or max((len(x) for x in column), default=0)
    out = np.zeros((len(column), max(width, 1)), dtype=np.int64)
    for row, values in enumerate(column):
        out[row, :len(values)] = values
    return out


def rec_lists(item_ids: np.ndarray, top: np.ndarray, scores: np.ndarray) -> list[list[dict]]:
    return [[{RANK: r + 1, S.ITEM_ID: item_ids[i], SCORE: float(s)} for r, (i, s) in enumerate(zip(row, vals))]
            for row, vals in zip(top, scores)]


@dataclass(frozen=True)
class Shared:
    """The model payload and the item arrays as broadcast variables: sent to each executor once."""
    model: Broadcast
    items: Broadcast

    def destroy(self) -> None:
        self.model.destroy()
        self.items.destroy()


def broadcast_scoring(sc: SparkContext, payload: ModelPayload, item_ids: np.ndarray, popular: np.ndarray,
                      popular_scores: np.ndarray, blocked: np.ndarray) -> Shared:
    """What :func:`score_users` needs besides the users, broadcast once: a caller that scores many
    times (the live refresh, every micro-batch) keeps it (a 50k-item model is tens of MB)."""
    return Shared(sc.broadcast(payload), sc.broadcast((item_ids, popular, popular_scores, blocked)))


def score_users(inputs: DataFrame, shared: Shared, spec: ScoringSpec,
                carry: tuple[T.StructField, ...] = ()) -> DataFrame:
    """Top-k per user of ``inputs`` (user_id, input, seen): the model's list, or the popularity list
    (``source = 'fallback'``) when fewer than ``min_history`` of the user's items are known to the model.

    ``shared``: the model and the item arrays (:func:`broadcast_scoring`): ``item_ids[idx]`` maps
    indices back to ids; ``popular`` holds item indices by popularity; seen (if ``mask_seen``),
    ``blocked`` and padding items are never recommended. ``carry``: columns of ``inputs`` passed
    through to the output unchanged (saves a join back)."""
    names = [f.name for f in carry]

    def batch(frame, model, ids, pop, pop_scores, block, version):
        scored = _score_batch(frame, model, model.num_items, ids, pop, pop_scores, block, spec, version)
        for name in names:
            scored[name] = frame[name].to_numpy()
        return scored

    return score_in_batches(inputs, shared, spec.batch_size, spec.threads, batch,
                            T.StructType(SCORED_SCHEMA.fields + list(carry)), batch_by=history_lengths)


def history_lengths(frame: pd.DataFrame) -> np.ndarray:
    """Items per left-padded ``input`` row (the LSTM runs each batch to its longest row)."""
    return np.fromiter((np.count_nonzero(row) for row in frame[S.INPUT]), dtype=np.int64, count=len(frame))


def score_in_batches(rows: DataFrame, shared: Shared, batch_size: int, threads: int, score_batch, schema,
                     batch_by: Optional[Callable[[pd.DataFrame], np.ndarray]] = None) -> DataFrame:
    """``rows`` scored by ``score_batch(frame, model, *items, version)`` in ``mapInPandas``: the model
    loaded once per worker, frames of ``batch_size`` rows. ``batch_by``: a sort key per row; rows with
    close keys are batched together (e.g. similar history lengths: 40% fewer LSTM steps on
    uniformly spread lengths) and come out in their input order."""
    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        torch.set_num_threads(threads)
        payload, items = shared.model.value, shared.items.value
        model = payload.load()
        for frame in batches:
            order = np.argsort(batch_by(frame), kind="stable") if batch_by else np.arange(len(frame))
            ordered = frame.iloc[order]
            parts = [score_batch(ordered.iloc[start:start + batch_size], model, *items, payload.version)
                     for start in range(0, len(frame), batch_size)]
            if parts:
                yield pd.concat(parts, ignore_index=True).iloc[np.argsort(order)].reset_index(drop=True)

    return rows.mapInPandas(score, schema=schema)


def _score_batch(frame: pd.DataFrame, model, n_model: int, ids: np.ndarray, pop: np.ndarray,
                 pop_scores: np.ndarray, block: np.ndarray, spec: ScoringSpec, version: str) -> pd.DataFrame:
    inputs = known_items_only(torch.from_numpy(_stack(frame[S.INPUT])), n_model)
    seen = _stack(frame[S.SEEN])
    use_model = ((inputs > 0).sum(dim=1) >= spec.min_history).numpy()
    recs: list[list[dict]] = [[] for _ in range(len(frame))]
    rows = np.flatnonzero(use_model)
    if len(rows):
        with torch.inference_mode():
            scores = model.score_next(inputs[rows]).float()
        banned = torch.zeros_like(scores, dtype=torch.bool)
        if spec.mask_seen:
            user_seen = torch.from_numpy(np.where(seen[rows] < n_model, seen[rows], 0))
            banned.scatter_(1, user_seen, True)
        known_blocked = block[block < n_model]
        banned[:, torch.from_numpy(known_blocked)] = True
        banned[:, 0] = True
        banned[:, len(ids):] = True  # items newer than this night's vocabulary (re-scoring an old night)
        scores = scores.masked_fill(banned, -math.inf)
        top = top_k_indices(scores, spec.k)
        for pos, row_recs in zip(rows, rec_lists(ids, top.numpy(), scores.gather(1, top).numpy())):
            recs[pos] = row_recs
    for pos in np.flatnonzero(~use_model):
        excluded = set(seen[pos].tolist()) if spec.mask_seen else set()
        keep = [j for j, item in enumerate(pop) if item not in excluded][:spec.k]
        recs[pos] = rec_lists(ids, [pop[keep]], [pop_scores[keep]])[0]
    return pd.DataFrame({S.USER_ID: frame[S.USER_ID].to_numpy(), RECS: recs,
                         SOURCE: np.where(use_model, SOURCE_MODEL, SOURCE_FALLBACK),
                         MODEL_VERSION: version})


def popularity_list(index: pd.DataFrame, blocked: set[int], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Fallback candidates: the ``length`` most popular unblocked items (count desc, index asc) and
    their share of all events as the score."""
    ranked = index[~index[S.ITEM_IDX].isin(blocked) & (index[S.COUNT] > 0)] \
        .sort_values([S.COUNT, S.ITEM_IDX], ascending=[False, True]).head(length)
    total = max(float(index[S.COUNT].sum()), 1.0)
    return ranked[S.ITEM_IDX].to_numpy(np.int64), (ranked[S.COUNT].to_numpy(np.float64) / total).astype(np.float32)


def id_lookup(index: pd.DataFrame) -> np.ndarray:
    """``ids[item_idx] = item_id`` (index 0, padding, maps to an empty string)."""
    ids = np.full(int(index[S.ITEM_IDX].max()) + 1, "", dtype=object)
    ids[index[S.ITEM_IDX].to_numpy()] = index[S.ITEM_ID].to_numpy()
    return ids
