"""Offline evaluation: full-ranking metrics of any scorer (baseline or model) under a named protocol.

A *scorer* is any callable ``score_batch(input LongTensor[B, L], seen LongTensor[B, S]) ->
FloatTensor[B, N]``: ``input`` is the query history left-padded with 0, ``seen`` the items the
evaluator will mask (0-padded); it returns one score per item index ``0..N-1``. The evaluator, not the
scorer, masks padding, items unknown at fit time and (if configured) seen items, ranks the target with
the shared conservative rule of :mod:`recsys_spark.metrics`, and measures coverage and popularity bias of
the top-k lists. Every scorer in a report therefore went through the same queries and the same code.

Protocols (each builds *fit sequences*, what the scorers may learn from, and *queries*):

* ``leave_last_out``: per user, the last event is the test target and the second-last the
  validation target; the query input is everything before the target and so are the fit sequences.
* ``temporal``: a global cut-off; sequences are fitted on events before it, and every event at or
  after it is a query given the user's whole history before that event (earlier test events
  included, as a deployed model would see them).
* ``session``: for anonymous sessions (GRU4Rec protocol): every event after the first of a test
  session is a query given the session prefix, ranked among all items of the training sessions,
  nothing masked.
* ``item_to_item`` (:mod:`recsys_spark.similar`): the leave-last-out test queries ranked with the
  similar-items list of the query's last item only, run with the leave-last-out test.

Queries whose target never occurs in the fit sequences cannot be ranked by anything that learned
from them; they are skipped and counted (``n_skipped``), never silently scored as misses.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import baselines as B
from recsys_spark import schemas as S
from recsys_spark.build import USER_SEQUENCES
from recsys_spark.datasets import METADATA, DatasetMetadata, dataset_dir
from recsys_spark.errors import MissingInputError, NotFoundError
from recsys_spark.metrics import ranking_metrics, target_ranks
from recsys_spark.sequences import VALIDATION_ONLY, day_end
from recsys_spark.tables import ensure_table, overwrite_partitions, qualified

log = logging.getLogger(__name__)

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LEAVE_LAST_OUT = "leave_last_out"
TEMPORAL = "temporal"
SESSION = "session"
PROTOCOLS = (LEAVE_LAST_OUT, TEMPORAL, SESSION)
VALIDATION = "validation"
TEST = "test"
HOLDOUT = {TEST: 1, VALIDATION: 2}
"""Leave-last-out: how many trailing events per user the split holds out of the fit sequences."""
MIN_EVENTS_HELD_OUT = 3

MODEL_NAME = "model"
"""``name`` of the model's rows in ``offline_metrics`` (``model_version`` tells models apart)."""
BASELINE_VERSION = "baseline"
"""``model_version`` of baseline rows in ``offline_metrics``."""

OFFLINE_METRICS = "offline_metrics"
OFFLINE_METRICS_SCHEMA = T.StructType([
    T.StructField("model_version", T.StringType(), False),
    T.StructField("name", T.StringType(), False),
    T.StructField("protocol", T.StringType(), False),
    T.StructField("split", T.StringType(), False),
    T.StructField("metric", T.StringType(), False),
    T.StructField("k", T.IntegerType(), False),
    T.StructField("value", T.DoubleType(), True),
    T.StructField(S.DS, T.StringType(), False),
])
"""One row per (scorer, protocol, split, metric, k) and night. Metrics: ``hr`` (= recall, one target),
``ndcg``, ``mrr``, ``coverage`` (share of rankable items in any top-k list), ``popularity_pct`` (mean
popularity percentile of recommended items, 100 = most popular); ``n_queries`` and ``n_skipped`` have
k = 0."""

QUERY_KEY = "key"
SEEN = S.SEEN


# --- queries -------------------------------------------------------------------------------------

@dataclass
class Queries:
    """Evaluation queries on the driver: one held-out target per row."""
    key: np.ndarray
    """user or session id of each query (several queries may share one)."""
    inputs: np.ndarray
    """int64[Q, L]: history before the target, most recent last, left-padded with 0."""
    targets: np.ndarray
    """int64[Q]."""
    seen: np.ndarray
    """int64[Q, S]: items to mask for the query (0-padded); S may be 1 with nothing seen."""

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, rows: np.ndarray) -> "Queries":
        return Queries(self.key[rows], self.inputs[rows], self.targets[rows], self.seen[rows])


def _padded(arrays: Sequence, width: Optional[int] = None, left: bool = False) -> np.ndarray:
    """Stack ragged int arrays into int64[n, width], 0-padded on the left or right; longer rows keep
    their last ``width`` entries."""
    width = max([len(a) for a in arrays] + [1]) if width is None else width
    out = np.zeros((len(arrays), width), dtype=np.int64)
    for row, values in enumerate(arrays):
        values = np.asarray(values, dtype=np.int64)[-width:] if len(values) else ()
        if len(values):
            if left:
                out[row, width - len(values):] = values
            else:
                out[row, :len(values)] = values
    return out


def collect_queries(queries: DataFrame, length: Optional[int] = None) -> Queries:
    """Bring a query DataFrame (``key``, ``input`` array<int>, ``target`` int, ``seen`` array<int>) to
    the driver, in a deterministic order (key, then target position). ``length`` left-pads/truncates
    ``input`` to a fixed width (default: the longest input)."""
    pdf = queries.orderBy(QUERY_KEY, F.size(S.INPUT)).toPandas()
    return Queries(
        key=pdf[QUERY_KEY].astype(str).to_numpy(),
        inputs=_padded([np.asarray(a)[np.asarray(a) != 0] for a in pdf[S.INPUT]], length, left=True),
        targets=pdf[S.TARGET].to_numpy(np.int64),
        seen=_padded(list(pdf[SEEN])),
    )


def _query_columns(prefix: Column, target: Column, key: Column, mask_prefix: bool) -> list[Column]:
    seen = F.array_distinct(prefix) if mask_prefix else F.array().cast("array<int>")
    return [key.cast("string").alias(QUERY_KEY), prefix.alias(S.INPUT),
            target.cast("int").alias(S.TARGET), seen.alias(SEEN)]


def leave_last_out(sequences: DataFrame, split: str = TEST) -> tuple[DataFrame, DataFrame]:
    """(fit sequences, queries) of the leave-last-out protocol for ``split`` (``test``: last event;
    ``validation``: second-last), as the dataset builder splits: users with fewer than
    ``MIN_EVENTS_HELD_OUT`` events are not queried and are fitted on in full. Fit sequences hold every
    user's events before the split's target, so for ``test`` the baselines also learn from the
    validation events, exactly what the query input shows."""
    holdout = HOLDOUT[split]
    items, ts, n = F.col(S.ITEM_IDX), F.col(S.TS), F.size(S.ITEM_IDX)
    held = n >= MIN_EVENTS_HELD_OUT
    fit = sequences.select(
        S.USER_ID, F.when(held, F.slice(items, 1, n - holdout)).otherwise(items).alias(S.ITEM_IDX),
        F.when(held, F.slice(ts, 1, n - holdout)).otherwise(ts).alias(S.TS))
    queries = sequences.where(held).select(*_query_columns(
        F.slice(items, 1, n - holdout), F.element_at(items, -holdout), F.col(S.USER_ID), mask_prefix=True))
    return fit, queries


def temporal_split(sequences: DataFrame, cutoff: dt.datetime,
                   until: Optional[dt.datetime] = None) -> tuple[DataFrame, DataFrame]:
    """(fit sequences, queries) of the global temporal protocol: fit on events with ``ts < cutoff``;
    every event with ``cutoff <= ts < until`` that has an earlier event of its user is a query whose
    input (and mask) is all of that user's earlier events, including earlier post-cut-off events."""
    cut = F.lit(cutoff).cast("timestamp")
    zipped = F.arrays_zip(F.col(S.ITEM_IDX).alias("i"), F.col(S.TS).alias("t"))
    before = F.filter(zipped, lambda e: e["t"] < cut)
    fit = (sequences.select(S.USER_ID, before.alias("_e"))
           .select(S.USER_ID, F.col("_e.i").alias(S.ITEM_IDX), F.col("_e.t").alias(S.TS))
           .where(F.size(S.ITEM_IDX) > 0))
    events = sequences.select(S.USER_ID, S.ITEM_IDX, F.posexplode(zipped).alias("_p", "_e"))
    in_window = (F.col("_e.t") >= cut) & (F.col("_p") > 0)
    if until is not None:
        in_window &= F.col("_e.t") < F.lit(until).cast("timestamp")
    queries = events.where(in_window).select(*_query_columns(
        F.slice(S.ITEM_IDX, 1, F.col("_p")), F.col("_e.i"), F.col(S.USER_ID), mask_prefix=True))
    return fit, queries


def session_queries(sessions: DataFrame) -> DataFrame:
    """Queries of the session protocol: for a test session ``s`` every ``s[p]`` with ``p >= 1`` given
    the prefix ``s[:p]``; nothing is masked (repeat clicks are legitimate next events)."""
    events = sessions.select(S.USER_ID, S.ITEM_IDX, F.posexplode(S.ITEM_IDX).alias("_p", "_i"))
    return (events.where(F.col("_p") > 0)
            .select(*_query_columns(F.slice(S.ITEM_IDX, 1, F.col("_p")), F.col("_i"),
                                    F.col(S.USER_ID), mask_prefix=False)))


def sample_queries(queries: Queries, max_queries: int, seed: int) -> Queries:
    """At most ``max_queries`` rows (0 = all), drawn without replacement with ``seed``, order kept."""
    if max_queries <= 0 or len(queries) <= max_queries:
        return queries
    rows = np.sort(np.random.default_rng(seed).choice(len(queries), max_queries, replace=False))
    return queries.take(rows)


# --- metrics -------------------------------------------------------------------------------------

def popularity_percentiles(popularity: np.ndarray) -> np.ndarray:
    """Percentile (0-100, ties averaged) of each item's fit count among rankable items (count > 0)."""
    pct = np.zeros(len(popularity), dtype=np.float64)
    rankable = popularity > 0
    if rankable.any():
        pct[rankable] = pd.Series(popularity[rankable]).rank(method="average", pct=True).to_numpy() * 100
    return pct


@dataclass
class EvalResult:
    name: str
    protocol: str
    split: str
    metrics: dict[str, float]
    n_queries: int
    n_skipped: int
    seconds: float
    ranks: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    model_version: str = BASELINE_VERSION


def evaluate(score_batch: Scorer, queries: Queries, popularity: np.ndarray, *, name: str,
             protocol: str, split: str, ks: Sequence[int] = (1, 5, 10, 20), mask_seen: bool = True,
             batch_size: int = 512) -> EvalResult:
    """Full-ranking metrics of ``score_batch`` on ``queries``.

    Rankable items are those with ``popularity > 0`` (seen in the fit sequences); padding and the
    rest are masked, and so are each query's ``seen`` items when ``mask_seen``. The target is never
    masked. Queries whose target is not rankable are skipped and counted."""
    start = time.perf_counter()
    num_items = len(popularity)
    if queries.inputs.size and (queries.inputs.min() < 0 or queries.inputs.max() >= num_items):
        raise ValueError(f"{name}: query input item outside [0, {num_items})")
    rankable = torch.as_tensor(popularity > 0)
    keep = rankable[torch.as_tensor(queries.targets)].numpy()
    queries = queries.take(np.flatnonzero(keep))
    pct = torch.as_tensor(popularity_percentiles(popularity))
    ranks = []
    covered = {k: torch.zeros(num_items, dtype=torch.bool) for k in ks}
    pop_sum, n_listed = {k: 0.0 for k in ks}, {k: 0 for k in ks}
    with torch.no_grad():
        for lo in range(0, len(queries), batch_size):
            inputs = torch.as_tensor(queries.inputs[lo:lo + batch_size])
            seen = torch.as_tensor(queries.seen[lo:lo + batch_size])
            targets = torch.as_tensor(queries.targets[lo:lo + batch_size])
            scores = score_batch(inputs, seen)
            if tuple(scores.shape) != (len(targets), num_items):
                raise ValueError(f"{name}: scores of shape {tuple(scores.shape)}, expected "
                                 f"({len(targets)}, {num_items})")
            mask = (~rankable).unsqueeze(0).expand(len(targets), -1).clone()
            if mask_seen:
                mask.scatter_(1, seen, True)
                mask[:, S.PADDING_IDX] = True
            ranks.append(target_ranks(scores, targets, mask))
            shown = scores.float().masked_fill(mask, -math.inf)
            top = B.top_k_indices(shown, max(ks))
            listed = torch.isfinite(shown.gather(1, top))
            for k in ks:
                items = top[:, :k][listed[:, :k]]
                covered[k][items] = True
                pop_sum[k] += float(pct[items].sum())
                n_listed[k] += items.numel()
    all_ranks = torch.cat(ranks).numpy() if ranks else np.zeros(0, np.int64)
    metrics = ranking_metrics(all_ranks, ks)
    n_rankable = int(rankable.sum())
    for k in ks:
        metrics[f"coverage@{k}"] = float(covered[k].sum()) / n_rankable if n_rankable else math.nan
        metrics[f"popularity_pct@{k}"] = pop_sum[k] / n_listed[k] if n_listed[k] else math.nan
    seconds = time.perf_counter() - start
    log.info("%s %s/%s: %d queries (%d skipped) in %.1fs: %s", name, protocol, split, len(queries),
             int((~keep).sum()), seconds,
             ", ".join(f"{m}={metrics[m]:.4f}" for m in (f"hr@{max(ks)}", f"ndcg@{max(ks)}")))
    return EvalResult(name, protocol, split, metrics, len(queries), int((~keep).sum()), seconds, all_ranks)


def evaluate_baselines(data: B.FitData, queries: Queries, names: Sequence[str], ev, *, protocol: str,
                       split: str, mask_seen: bool, fitted: Optional[dict] = None) -> list[EvalResult]:
    """Fit each named baseline on ``data`` and evaluate it on ``queries`` (``ev``: EvaluateConfig);
    ``fitted`` (if given) receives the fitted baselines by name, for more protocols on the same fit."""
    results = []
    for name in names:
        start = time.perf_counter()
        baseline = B.build_baseline(name, data, ev)
        if fitted is not None:
            fitted[name] = baseline
        fit_seconds = time.perf_counter() - start
        result = evaluate(baseline.score_batch, queries, data.popularity, name=name, protocol=protocol,
                          split=split, ks=ev.ks, mask_seen=mask_seen, batch_size=ev.batch_size)
        result.seconds += fit_seconds
        results.append(result)
    return results


# --- offline_metrics table and report ------------------------------------------------------------

def metric_rows(results: Sequence[EvalResult], ds: str) -> pd.DataFrame:
    """Long-format rows of ``offline_metrics`` for ``results``."""
    rows = []
    for r in results:
        head = (r.model_version, r.name, r.protocol, r.split)
        for key, value in r.metrics.items():
            metric, k = key.split("@")
            rows.append((*head, metric, int(k), float(value), ds))
        rows += [(*head, "n_queries", 0, float(r.n_queries), ds),
                 (*head, "n_skipped", 0, float(r.n_skipped), ds)]
    return pd.DataFrame(rows, columns=OFFLINE_METRICS_SCHEMA.fieldNames())


def write_offline_metrics(spark: SparkSession, database: str, rows: pd.DataFrame, ds: str) -> str:
    """Overwrite partition ``ds`` of ``<database>.offline_metrics`` with ``rows`` plus the rows of that
    night whose ``model_version`` is not in ``rows`` (another model evaluated earlier the same night
    stays, so a gate can compare candidate and production on one night). Returns the table name."""
    table = qualified(database, OFFLINE_METRICS)
    ensure_table(spark, table, OFFLINE_METRICS_SCHEMA)
    versions = sorted(set(rows["model_version"]))
    kept = (spark.table(table).where((F.col(S.DS) == ds) & ~F.col("model_version").isin(versions))
            .toPandas())
    merged = pd.concat([kept[rows.columns], rows], ignore_index=True) if len(kept) else rows
    merged = merged.astype({"k": "int32", "value": "float64"})
    overwrite_partitions(spark.createDataFrame(merged, OFFLINE_METRICS_SCHEMA), table)
    log.info("wrote %d rows (%s) into %s ds=%s; kept %d rows of other versions", len(rows),
             ", ".join(versions), table, ds, len(kept))
    return table


def read_offline_metrics(spark: SparkSession, database: str, ds: str, model_version: str,
                         protocol: str = LEAVE_LAST_OUT, split: str = TEST,
                         name: Optional[str] = None) -> dict[str, float]:
    """``{"ndcg@10": value, ...}`` of one scorer for one night (``name`` needed for baselines)."""
    rows = (spark.table(qualified(database, OFFLINE_METRICS))
            .where((F.col(S.DS) == ds) & (F.col("model_version") == model_version)
                   & (F.col("protocol") == protocol) & (F.col("split") == split)))
    if name is not None:
        rows = rows.where(F.col("name") == name)
    return {f"{r['metric']}@{r['k']}": r["value"] for r in rows.collect()}


REPORT_COLUMNS = ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@10", "ndcg@20", "mrr@10", "mrr@20",
                  "coverage@10", "coverage@20", "popularity_pct@10", "popularity_pct@20")
PLOT_METRICS = ("hr@10", "hr@20", "ndcg@10", "ndcg@20", "mrr@20")


def write_report(results: Sequence[EvalResult], directory: str | Path, title: str,
                 notes: Sequence[str] = ()) -> Path:
    """Markdown report (one table per protocol/split) and one PNG bar plot per protocol/split under
    ``directory``; returns the markdown path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    safe = lambda text: "".join(c if c.isalnum() or c in "-_." else "_" for c in text)  # noqa: E731
    stem = safe(title)
    lines = [f"# {title}", "", *notes, "",
             "Full ranking over every item seen in the fit data; ties count against the target; "
             "HR@k equals Recall@k (one target per query). coverage@k: share of rankable items in any "
             "top-k list; popularity_pct@k: mean popularity percentile of recommended items.", ""]
    groups: dict[tuple[str, str], list[EvalResult]] = {}
    for r in results:
        groups.setdefault((r.protocol, r.split), []).append(r)
    for (protocol, split), group in groups.items():
        columns = [c for c in REPORT_COLUMNS if c in group[0].metrics]
        lines += [f"## {protocol} / {split}", "",
                  f"{group[0].n_queries} queries evaluated, {group[0].n_skipped} skipped "
                  "(target never seen in the fit data).", "",
                  "| scorer | " + " | ".join(columns) + " | seconds |",
                  "|---|" + "---|" * (len(columns) + 1)]
        for r in group:
            label = r.name if r.model_version == BASELINE_VERSION else f"{r.name} {r.model_version}"
            lines.append(f"| {label} | " + " | ".join(f"{r.metrics[c]:.4f}" for c in columns)
                         + f" | {r.seconds:.1f} |")
        plot = directory / f"{stem}_{safe(protocol)}_{split}.png"
        shown = [m for m in PLOT_METRICS if m in group[0].metrics]
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(group) * len(shown) / 2), 4))
        width = 0.8 / len(group)
        x = np.arange(len(shown))
        for i, r in enumerate(group):
            label = r.name if r.model_version == BASELINE_VERSION else f"{r.name} {r.model_version}"
            ax.bar(x + i * width, [r.metrics[m] for m in shown], width, label=label)
        ax.set_xticks(x + width * (len(group) - 1) / 2, shown)
        ax.set_title(f"{title}: {protocol} / {split}")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
        plt.close(fig)
        lines += ["", f"![{protocol} {split}]({plot.name})", ""]
    path = directory / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    (directory / f"{stem}.json").write_text(json.dumps(
        [{k: v for k, v in asdict(r).items() if k != "ranks"} for r in results], indent=2))
    return path


# --- nightly run ---------------------------------------------------------------------------------

def known_items_only(inputs: torch.Tensor, num_known: int) -> torch.Tensor:
    """``inputs`` with items ``>= num_known`` dropped and each row re-left-padded (order kept)."""
    known = (inputs > S.PADDING_IDX) & (inputs < num_known)
    order = torch.sort(known.to(torch.int8), dim=1, stable=True).indices
    return torch.where(known, inputs, torch.zeros((), dtype=inputs.dtype)).gather(1, order)


def model_artifact(storage_root: str | Path, model_version: str) -> Path:
    """The artifact directory of a registered model version."""
    from recsys_spark.registry import load_registry, models_root

    entry = load_registry(models_root(storage_root))["versions"].get(model_version)
    directory = Path(entry["artifact"]) if entry else models_root(storage_root) / model_version
    if not directory.exists():
        raise NotFoundError(f"model version {model_version!r}: no artifact at {directory}")
    return directory


def model_scorer(storage_root: str | Path, model_version: str, num_items: int) -> Scorer:
    """Score function of a registered model (``recsys_spark.model.LSTMRecommender``): its scores
    after each query's last item (``score_next``, as in training and Spark scoring). A model built on an older vocabulary ignores the items added
    since in the input and scores them -inf (indices are append-only, so the others line up)."""
    from recsys_spark.model import load_model

    model = load_model(model_artifact(storage_root, model_version))
    known = model.num_items
    if known > num_items:
        raise ValueError(f"model {model_version} knows {known} item indices, the night's dataset only "
                         f"{num_items}: it was built on a newer vocabulary")

    @torch.no_grad()
    def score_batch(inputs: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        scores = model.score_next(known_items_only(inputs, known))
        return torch.nn.functional.pad(scores, (0, num_items - known), value=-math.inf)

    return score_batch


def _protocol_data(spark: SparkSession, cfg, sequences: DataFrame, protocol: str, split: str,
                   ds: str, meta) -> tuple[DataFrame, DataFrame]:
    """(fit sequences, queries) of one protocol and split for night ``ds``. Leave-last-out uses the
    dataset's own ``test``/``validation`` Parquet when the dataset was split that way, so the model
    is evaluated on exactly the rows it was validated on; otherwise queries are built here."""
    if protocol == LEAVE_LAST_OUT:
        if meta is not None and meta.split == VALIDATION_ONLY:
            raise ValueError(f"night {ds} was built with sequences.split={VALIDATION_ONLY}: its last items "
                             "chose the model's epoch, so a leave-last-out test on them is biased; evaluate "
                             "with the temporal protocol or rebuild with leave_last_out")
        fit, queries = leave_last_out(sequences, split)
        if meta is not None and meta.split == LEAVE_LAST_OUT:
            queries = (spark.read.parquet(str(dataset_dir(cfg.storage.root, ds) / split))
                       .select(F.col(S.USER_ID).alias(QUERY_KEY), S.INPUT, S.TARGET, SEEN))
        return fit, queries
    if protocol == TEMPORAL:
        days = dt.timedelta(days=cfg.sequences.temporal_cutoff_days)
        test_cut = day_end(ds) - days
        if split == TEST:
            return temporal_split(sequences, test_cut)
        return temporal_split(sequences, test_cut - days, until=test_cut)
    raise ValueError(f"protocol '{protocol}' cannot run nightly (choose {LEAVE_LAST_OUT}, {TEMPORAL})")


def run_evaluation(spark: SparkSession, cfg, ds: str, model_versions: Sequence[str] = (),
                   scorers: Optional[dict[str, Scorer]] = None) -> tuple[list[EvalResult], Path]:
    """Evaluate the configured baselines and each model of ``model_versions`` (loaded from the
    registry unless ``scorers`` maps the version to a score function) on night ``ds`` under every
    configured protocol and split, on identical queries; write the rows into ``offline_metrics`` and
    the report under ``<storage.root>/reports/ds=<ds>/``. Evaluating candidate and production in one
    run gives the gate both on the same night."""
    ev = cfg.evaluate
    sequences_table = qualified(cfg.storage.database, USER_SEQUENCES)
    if not spark.catalog.tableExists(sequences_table):
        raise MissingInputError(f"no user_sequences for ds={ds} ({sequences_table} does not exist): "
                                "run build-sequences for this night first")
    sequences = (spark.table(sequences_table)
                 .where(F.col(S.DS) == ds).select(S.USER_ID, S.ITEM_IDX, S.TS))
    meta_dir = dataset_dir(cfg.storage.root, ds)
    meta = DatasetMetadata.load(meta_dir) if (meta_dir / METADATA).exists() else None
    if meta is not None:
        num_items = meta.num_items
    else:
        largest = sequences.select(F.max(F.array_max(S.ITEM_IDX))).first()[0]
        if largest is None:
            raise MissingInputError(f"no user_sequences for ds={ds}: run build-sequences for this night first")
        num_items = largest + 1
    injected = set(scorers or {})
    scorers = dict(scorers or {})
    for version in model_versions:
        if version not in scorers:
            scorers[version] = model_scorer(cfg.storage.root, version, num_items)
    results = []
    for protocol in ev.protocols:
        for split in ev.splits:
            fit, query_df = _protocol_data(spark, cfg, sequences, protocol, split, ds, meta)
            queries = sample_queries(collect_queries(query_df, cfg.sequences.window_length),
                                     ev.max_queries, ev.seed)
            data = B.prepare_fit_data(fit, num_items)
            fitted: dict = {}
            results += evaluate_baselines(data, queries, ev.baselines, ev, protocol=protocol,
                                          split=split, mask_seen=ev.mask_seen, fitted=fitted)
            for version, scorer in scorers.items():
                result = evaluate(scorer, queries, data.popularity, name=MODEL_NAME, protocol=protocol,
                                  split=split, ks=ev.ks, mask_seen=ev.mask_seen,
                                  batch_size=ev.batch_size)
                result.model_version = version
                results.append(result)
            if (protocol, split) == (LEAVE_LAST_OUT, TEST):
                # The similar-items lists, on the same queries and fitted baselines (no extra fit).
                from recsys_spark.similar import evaluate_item_to_item
                models = {v: model_artifact(cfg.storage.root, v) for v in model_versions
                          if v not in injected}
                results += evaluate_item_to_item(queries, data, fitted, models, cfg)
            data.sequences.unpersist()
    table = write_offline_metrics(spark, cfg.storage.database, metric_rows(results, ds), ds)
    versions = "+".join(scorers) or "baselines"
    notes = [f"- night: {ds}", f"- model versions: {', '.join(scorers) or 'none (baselines only)'}",
             f"- items (vector size): {num_items}; input length: {cfg.sequences.window_length}",
             f"- seen items masked: {ev.mask_seen}; rows in `{table}`"]
    report = write_report(results, Path(cfg.storage.root) / "reports" / f"ds={ds}",
                          f"evaluate_{versions}", notes)
    log.info("report: %s", report)
    return results, report
