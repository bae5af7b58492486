"""Reference recommenders every model has to beat, scored through the same evaluator as the model.

Each baseline is fitted from the *fit sequences* of a protocol (a Spark DataFrame with ``user_id``,
``item_idx`` array<int> and ``ts`` array<timestamp>, time-ordered: the events the evaluation queries
are allowed to know) and then exposes ``score_batch(input LongTensor[B, L], seen LongTensor[B, S]) ->
FloatTensor[B, N]``: one full score vector per query over the item indices ``0..N-1``. Counting runs
in Spark; scoring is vectorised torch on the driver. Masking (padding, seen items, items unknown at fit
time) is the evaluator's job, never a baseline's, so every scorer is ranked by identical rules.

Scores are float32 because the shared metric code ranks in float32; baselines whose natural score is
a lexicographic key (e.g. transition count, then popularity) turn it into float32 without merging
distinct keys (:func:`exact_float32`), so ties are exactly the ties of the key.
"""
from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark import schemas as S

MOST_POPULAR = "most_popular"
RECENTLY_POPULAR = "recently_popular"
TRANSITIONS = "transitions"
SKNN = "sknn"
ALS = "als"
BASELINES = (MOST_POPULAR, RECENTLY_POPULAR, TRANSITIONS, SKNN, ALS)

_FLOAT32_EXACT = 2 ** 24


@dataclass
class FitData:
    """What every baseline is fitted from: the protocol's fit sequences and their item counts."""
    sequences: DataFrame
    num_items: int
    popularity: np.ndarray
    """int64[num_items]: events per item in ``sequences``; 0 at padding and at items never seen."""


def item_counts(sequences: DataFrame, num_items: int, since: Optional[object] = None) -> np.ndarray:
    """Events per item index in ``sequences`` (optionally only events with ``ts >= since``), counted in
    Spark and returned as a dense int64 vector of length ``num_items``."""
    events = sequences.select(F.explode(F.arrays_zip(F.col(S.ITEM_IDX).alias("i"),
                                                     F.col(S.TS).alias("t"))).alias("e"))
    if since is not None:
        events = events.where(F.col("e.t") >= F.lit(since))
    rows = events.groupBy(F.col("e.i").alias("i")).count().collect()
    counts = np.zeros(num_items, dtype=np.int64)
    if rows:
        idx = np.array([r["i"] for r in rows], dtype=np.int64)
        if idx.min() < 0 or idx.max() >= num_items:
            raise ValueError(f"item index outside [0, {num_items}) in the fit sequences")
        counts[idx] = [r["count"] for r in rows]
    counts[S.PADDING_IDX] = 0
    return counts


def prepare_fit_data(sequences: DataFrame, num_items: int) -> FitData:
    """Check and cache the fit sequences (every baseline reads them) and count popularity once.

    Rows whose item and timestamp arrays differ in length, or hold nulls or indices outside
    ``[1, num_items)``, would silently skew every baseline, so they fail the evaluation instead."""
    items, ts = F.col(S.ITEM_IDX), F.col(S.TS)
    bad = (items.isNull() | ts.isNull() | (F.size(items) != F.size(ts))
           | F.exists(items, lambda i: i.isNull() | (i < 1) | (i >= num_items))
           | F.exists(ts, lambda t: t.isNull()))
    sequences = sequences.select(S.USER_ID, S.ITEM_IDX, S.TS).where(F.size(items) > 0).cache()
    n_bad = sequences.where(bad).count()
    if n_bad:
        sequences.unpersist()
        raise ValueError(f"{n_bad} fit sequences have null entries, item/timestamp arrays of different "
                         f"lengths or item indices outside [1, {num_items})")
    return FitData(sequences, num_items, item_counts(sequences, num_items))


def exact_float32(keys: torch.Tensor) -> torch.Tensor:
    """Float32 scores with the same order and the same ties as ``keys`` (int64/float64 [B, N]).

    Integer keys below 2**24 are exact in float32 as they are; anything else is replaced by its dense
    rank within its row (equal keys share a rank), which float32 holds exactly for N < 2**24."""
    if not keys.is_floating_point() and (keys.numel() == 0 or int(keys.abs().max()) < _FLOAT32_EXACT):
        return keys.float()
    ordered, order = torch.sort(keys, dim=1, stable=True)
    new_value = torch.ones_like(ordered, dtype=torch.float32)
    new_value[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).float()
    return torch.empty_like(new_value).scatter_(1, order, torch.cumsum(new_value, dim=1))


def _exact_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k columns by (score desc, column asc) through one packed int64 key per entry:
    order-preserving float bits in the high half, the reversed column in the low half."""
    bits = scores.view(torch.int32).to(torch.int64)
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # monotone in the float value
    column = torch.arange(scores.shape[1], dtype=torch.int64)
    return torch.topk((ordered << 32) | (0xFFFFFFFF - column), k, dim=1).indices


def top_k_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """LongTensor[B, k]: each row's ``k`` best columns, by score descending then column ascending
    (NaN ranks like -inf).

    ``torch.topk`` leaves the order of ties unspecified, so its result is only kept for rows where
    no tie straddles the k-th place (then the set is exact and is re-ordered by column within equal
    scores); the few other rows go through the slower exact packed-key top-k."""
    scores = scores.float() + 0.0  # -0.0 becomes 0.0, which it equals
    scores = torch.where(torch.isnan(scores), torch.full((), -math.inf), scores)
    k = min(k, scores.shape[1])
    values, top = torch.topk(scores, k, dim=1)
    kth = values[:, -1:]
    straddles = (scores == kth).sum(dim=1) > (values == kth).sum(dim=1)
    by_column, perm = torch.sort(top, dim=1)
    order = torch.sort(values.gather(1, perm), dim=1, descending=True, stable=True).indices
    top = by_column.gather(1, order)
    if straddles.any():
        top[straddles] = _exact_top_k(scores[straddles], k)
    return top


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """BoolTensor[B, N] selecting each row's top ``k`` finite scores (ties: lower column first); rows
    with fewer finite scores select fewer."""
    top = top_k_indices(scores, k)
    finite = torch.isfinite(scores.gather(1, top))
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, top, finite)


class MostPopular:
    """Same list for everyone: items by number of events in the fit data."""
    name = MOST_POPULAR

    def __init__(self, data: FitData):
        self._scores = exact_float32(torch.as_tensor(data.popularity).unsqueeze(0))

    def score_batch(self, inputs: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        return self._scores.expand(inputs.shape[0], -1)


class RecentlyPopular:
    """Items by events in the last ``days`` days before the latest fit event (the cut-off), ties and
    items not seen recently ordered by all-time popularity: tracks trends that all-time counts miss."""
    name = RECENTLY_POPULAR

    def __init__(self, data: FitData, days: int = 7):
        latest = data.sequences.select(F.max(F.array_max(S.TS)).alias("t")).first()["t"]
        recent = (item_counts(data.sequences, data.num_items,
                              since=latest - dt.timedelta(days=days)) if latest is not None
                  else np.zeros_like(data.popularity))
        keys = torch.as_tensor(recent * (int(data.popularity.max()) + 1) + data.popularity)
        self.cutoff = latest
        self._scores = exact_float32(keys.unsqueeze(0))

    def score_batch(self, inputs: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        return self._scores.expand(inputs.shape[0], -1)


class Transitions:
    """Item-to-item transitions: candidates ranked by how often they directly followed the query's
    last item in the fit sequences, then by popularity (which is all a query gets when its last item
    was never followed by anything). Counted in Spark, stored as CSR rows on the driver."""
    name = TRANSITIONS

    def __init__(self, data: FitData):
        items = F.col(S.ITEM_IDX)
        pairs = (data.sequences.where(F.size(items) > 1)
                 .select(F.explode(F.arrays_zip(
                     F.slice(items, 1, F.size(items) - 1).alias("a"),
                     F.slice(items, 2, F.size(items) - 1).alias("b"))).alias("p"))
                 .groupBy(F.col("p.a").alias("a"), F.col("p.b").alias("b")).count()
                 .orderBy("a", "b"))
        pdf = pairs.toPandas()
        n = data.num_items
        prev = pdf["a"].to_numpy(np.int64)
        self._next = pdf["b"].to_numpy(np.int64)
        self._count = pdf["count"].to_numpy(np.int64)
        self._indptr = np.zeros(n + 1, dtype=np.int64)
        np.add.at(self._indptr, prev + 1, 1)
        self._indptr = np.cumsum(self._indptr)
        self._popularity = torch.as_tensor(data.popularity)
        self._base = int(data.popularity.max()) + 1
        self._popularity_f32 = self._popularity.float()
        largest = (int(self._count.max()) if len(pdf) else 0) * self._base + self._base - 1
        self._float32_exact = largest < _FLOAT32_EXACT
        self.num_pairs = len(pdf)

    def counts_after(self, last: np.ndarray, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        """Dense [B, N] transition counts out of each row's ``last`` item (0 for padding)."""
        if len(last) and (last.min() < 0 or last.max() >= len(self._popularity)):
            raise ValueError(f"query item outside [0, {len(self._popularity)})")
        start, stop = self._indptr[last], self._indptr[last + 1]
        lengths = stop - start
        rows = np.repeat(np.arange(len(last)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat = np.repeat(start, lengths) + offsets
        dense = torch.zeros(len(last), len(self._popularity), dtype=dtype)
        dense[torch.as_tensor(rows), torch.as_tensor(self._next[flat])] = torch.as_tensor(
            self._count[flat]).to(dtype)
        return dense

    def score_batch(self, inputs: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        last = inputs[:, -1].numpy().astype(np.int64)
        if self._float32_exact:  # the common case: build the keys in float32 directly
            return self.counts_after(last, torch.float32) * self._base + self._popularity_f32
        return exact_float32(self.counts_after(last) * self._base + self._popularity)


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """float32 sparse CSR tensor from COO triplets sorted by (row, col)."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(torch.as_tensor(np.cumsum(indptr)), torch.as_tensor(cols),
                                       torch.as_tensor(values, dtype=torch.float32), size=shape)


def position_weights(inputs: torch.Tensor, decay: str) -> torch.Tensor:
    """Weight of each position of left-padded ``inputs`` [B, L]: 0 at padding, 1 at the last item,
    decaying towards the start so that recent items dominate (``linear``: p/len; ``div``: 1/distance
    from the end; ``same``: 1)."""
    valid = inputs > S.PADDING_IDX
    length = valid.sum(dim=1, keepdim=True).clamp(min=1)
    from_end = inputs.shape[1] - torch.arange(inputs.shape[1]).unsqueeze(0)  # 1 at the last column
    if decay == "linear":
        w = (length - from_end + 1).clamp(min=0) / length
    elif decay == "div":
        w = 1.0 / from_end.float().expand_as(inputs)
    elif decay == "same":
        w = torch.ones_like(inputs, dtype=torch.float32)
    else:
        raise ValueError(f"unknown decay '{decay}' (linear, div, same)")
    return torch.where(valid, w.float(), torch.zeros((), dtype=torch.float32))


class SequenceKNN:
    """V-SKNN-style nearest neighbours (Ludewig & Jannach, 2018), written from the paper's description.

    The query is a real-valued item vector whose weights decay with distance from its last item; its
    similarity to a fit sequence is the dot product with that sequence's binary item vector. Among fit
    sequences sharing at least one item with the query, only the ``sample_size`` most recent (by last
    event) are candidates, and the ``k`` most similar of them are the neighbours; an item's score is
    the summed similarity of the neighbours containing it. All of it is two sparse-dense products per
    batch (queries x sequences, neighbours x items), so it runs on a few cores."""
    name = SKNN

    def __init__(self, data: FitData, k: int = 100, sample_size: int = 500, decay: str = "div"):
        self.k, self.sample_size, self.decay = k, sample_size, decay
        position_weights(torch.zeros(1, 1, dtype=torch.long), decay)  # reject a bad decay early
        pdf = (data.sequences
               .select(F.array_distinct(S.ITEM_IDX).alias("items"), F.array_max(S.TS).alias("last"),
                       S.USER_ID)
               .orderBy(F.col("last").desc(), S.USER_ID)  # column j = j-th most recent sequence
               .toPandas())
        n_seq = len(pdf)
        lengths = pdf["items"].map(len).to_numpy()
        rows = np.repeat(np.arange(n_seq), lengths)
        cols = np.concatenate(pdf["items"].to_list()).astype(np.int64) if n_seq else np.zeros(0, np.int64)
        order = np.lexsort((cols, rows))
        ones = np.ones(len(cols), dtype=np.float32)
        self._seq_items = _csr(rows[order], cols[order], ones, (n_seq, data.num_items))
        by_item = np.lexsort((rows, cols))
        self._item_seqs = _csr(cols[by_item], rows[by_item], ones, (data.num_items, n_seq))
        self.num_sequences = n_seq

    def score_batch(self, inputs: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        batch, n_items = inputs.shape[0], self._item_seqs.shape[0]
        query = torch.zeros(batch, n_items, dtype=torch.float32)
        query.scatter_reduce_(1, inputs, position_weights(inputs, self.decay), reduce="amax")
        query[:, S.PADDING_IDX] = 0.0
        sim = (self._seq_items @ query.T).T  # [B, n_seq], columns most recent first
        shares = sim > 0
        if self.sample_size > 0:
            shares &= torch.cumsum(shares, dim=1) <= self.sample_size
        sim = torch.where(shares, sim, torch.zeros((), dtype=sim.dtype))
        neighbours = top_k_mask(torch.where(shares, sim, torch.full((), -math.inf)), self.k)
        weights = torch.where(neighbours, sim, torch.zeros((), dtype=sim.dtype))
        return (self._item_seqs @ weights.T).T


class ALSBaseline:
    """Spark ``pyspark.ml`` implicit ALS on (sequence, item, event count), scored by folding each query
    in: the query's user vector is solved from its own history with the fitted item factors, by the
    same normal equations Spark's implicit ALS uses for a user (confidence 1 + alpha * count,
    ``regParam`` scaled by the number of distinct items). That scores users and sessions unseen at fit
    time too (temporal and session protocols), and a known user's latest history, not a stale vector."""
    name = ALS

    def __init__(self, data: FitData, rank: int = 64, max_iter: int = 10, reg: float = 0.1,
                 alpha: float = 10.0, seed: int = 11):
        from pyspark.ml.recommendation import ALS as SparkALS

        self.reg, self.alpha = reg, alpha
        users = data.sequences.select(S.USER_ID).distinct().withColumn(
            "u", F.row_number().over(Window.orderBy(S.USER_ID)) - 1)
        ratings = (data.sequences.join(users, S.USER_ID)
                   .select("u", F.explode(S.ITEM_IDX).alias("i"))
                   .groupBy("u", "i").agg(F.count(F.lit(1)).cast("float").alias("r")))
        als = SparkALS(rank=rank, maxIter=max_iter, regParam=reg, alpha=alpha, implicitPrefs=True,
                       userCol="u", itemCol="i", ratingCol="r", seed=seed, checkpointInterval=-1,
                       coldStartStrategy="drop")
        model = als.fit(ratings)
        self.model, self.users = model, users
        factors = model.itemFactors.toPandas()
        self._item_factors = torch.zeros(data.num_items, rank, dtype=torch.float64)
        if len(factors):
            self._item_factors[torch.as_tensor(factors["id"].to_numpy(np.int64))] = torch.as_tensor(
                np.stack(factors["features"].to_list()), dtype=torch.float64)
        self._item_factors[S.PADDING_IDX] = 0.0
        self._gram = self._item_factors.T @ self._item_factors
        self._unit_factors = torch.nn.functional.normalize(self._item_factors, dim=1)

    def item_cosine(self, items: torch.Tensor) -> torch.Tensor:
        """[B, N] cosine between each of ``items`` [B] and every item's factors (0 for an item
        without factors): the classical item-to-item list of a factorisation model."""
        return (self._unit_factors[items] @ self._unit_factors.T).float()

    def user_vectors(self, inputs: torch.Tensor) -> torch.Tensor:
        """Least-squares user vectors [B, rank] for the histories in ``inputs`` (padding ignored)."""
        batch = inputs.shape[0]
        items, _ = torch.sort(inputs, dim=1)
        first = torch.ones_like(items, dtype=torch.bool)
        first[:, 1:] = items[:, 1:] != items[:, :-1]
        first &= items != S.PADDING_IDX
        counts = torch.zeros(batch, self._item_factors.shape[0], dtype=torch.float64)
        counts.scatter_add_(1, inputs, torch.ones_like(inputs, dtype=torch.float64))
        count = torch.where(first, counts.gather(1, items), torch.zeros((), dtype=torch.float64))
        y = self._item_factors[items]  # [B, L, r]; padding rows are zero
        c1 = self.alpha * count
        a = self._gram + torch.einsum("bl,blr,bls->brs", c1, y, y)
        distinct = first.sum(dim=1).to(torch.float64)
        a = a + (self.reg * distinct.clamp(min=1)).view(-1, 1, 1) * torch.eye(a.shape[-1], dtype=a.dtype)
        b = torch.einsum("bl,blr->br", torch.where(first, 1.0 + c1, torch.zeros((), dtype=c1.dtype)), y)
        return torch.linalg.solve(a, b)

    def score_batch(self, inputs: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        return (self.user_vectors(inputs) @ self._item_factors.T).float()


def build_baseline(name: str, data: FitData, ev) -> object:
    """Instantiate baseline ``name`` with the hyper-parameters of ``ev`` (an ``EvaluateConfig``)."""
    if name == MOST_POPULAR:
        return MostPopular(data)
    if name == RECENTLY_POPULAR:
        return RecentlyPopular(data, days=ev.recent_days)
    if name == TRANSITIONS:
        return Transitions(data)
    if name == SKNN:
        return SequenceKNN(data, k=ev.sknn_k, sample_size=ev.sknn_sample_size, decay=ev.sknn_decay)
    if name == ALS:
        return ALSBaseline(data, rank=ev.als_rank, max_iter=ev.als_max_iter, reg=ev.als_reg,
                           alpha=ev.als_alpha, seed=ev.seed)
    raise ValueError(f"unknown baseline '{name}' (known: {', '.join(BASELINES)})")
