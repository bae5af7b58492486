"""Sequence building: events of a night's look-back window -> vocabulary, per-user sequences, leakage-free
splits and training windows with popularity-sampled negatives.

Every step is a pure DataFrame -> DataFrame function; the build_sequences job wires them together.
Ordering is always (ts, item_id, event_type): a timestamp tie is broken by a stable key, never by the
physical order of rows, so the output does not depend on partitioning.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterator, Optional

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import schemas as S
from recsys_spark.errors import DataError

# Rejection reasons of the validation step.
MISSING_USER = "missing_user_id"
MISSING_ITEM = "missing_item_id"
MISSING_EVENT_TYPE = "missing_event_type"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
BAD_TIMESTAMP = "unparsable_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
PRE_EPOCH_TIMESTAMP = "timestamp_before_1970"

REQUIRED_COLUMNS = (S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.TS)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

LEAVE_LAST_OUT = "leave_last_out"
TEMPORAL = "temporal"
VALIDATION_ONLY = "validation_only"
SPLITS = (LEAVE_LAST_OUT, TEMPORAL, VALIDATION_ONLY)

_ORDER = "_order"
_REASON = "_reason"


class DataQualityError(DataError):
    """The night's input is too broken to build from; the message says what and how much."""


def day_end(ds: str) -> dt.datetime:
    """First instant after night ``ds``, UTC-aware: PySpark turns a naive datetime literal into a
    timestamp in the driver's local time zone, which would shift the night off a UTC host."""
    return dt.datetime.combine(dt.date.fromisoformat(ds) + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


# --- 1. validation -------------------------------------------------------------------------------

def validate_events(events: DataFrame, ds: str, event_types: list[str]) -> tuple[DataFrame, DataFrame]:
    """Split raw events into valid rows (events schema) and rejected rows (raw JSON + reason).

    ``ts`` may be a timestamp or a string (text sources); strings that do not parse are rejected, and
    so is anything later than the end of night ``ds`` (clock skew, bad producers) or before 1970
    (negative epochs, zero defaults). Input without a required column is refused as a whole."""
    original = events.columns
    missing = [c for c in REQUIRED_COLUMNS if c not in {o.lower() for o in original}]
    if missing:
        raise DataQualityError(f"input events lack required column(s) {', '.join(missing)} "
                               f"(found: {', '.join(original) or 'none'}); expected at least "
                               f"{', '.join(REQUIRED_COLUMNS)}")
    ts = F.col(S.TS)
    if dict(events.dtypes).get(S.TS) != "timestamp":
        ts = F.try_to_timestamp(F.col(S.TS).cast("string"))
    if S.SESSION_ID not in original:
        events = events.withColumn(S.SESSION_ID, F.lit(None).cast("string"))
    staged = events.select(
        F.to_json(F.struct(*[F.col(c) for c in original])).alias(S.RAW),
        F.trim(F.col(S.USER_ID).cast("string")).alias(S.USER_ID),
        F.trim(F.col(S.ITEM_ID).cast("string")).alias(S.ITEM_ID),
        F.lower(F.trim(F.col(S.EVENT_TYPE).cast("string"))).alias(S.EVENT_TYPE),
        ts.alias(S.TS),
        F.col(S.SESSION_ID).cast("string").alias(S.SESSION_ID),
    )
    reason = (F.when(_blank(F.col(S.USER_ID)), F.lit(MISSING_USER))
              .when(_blank(F.col(S.ITEM_ID)), F.lit(MISSING_ITEM))
              .when(_blank(F.col(S.EVENT_TYPE)), F.lit(MISSING_EVENT_TYPE))
              .when(~F.col(S.EVENT_TYPE).isin(*event_types), F.lit(UNKNOWN_EVENT_TYPE))
              .when(F.col(S.TS).isNull(), F.lit(BAD_TIMESTAMP))
              .when(F.col(S.TS) >= F.lit(day_end(ds)), F.lit(FUTURE_TIMESTAMP))
              .when(F.col(S.TS) < F.lit(EPOCH), F.lit(PRE_EPOCH_TIMESTAMP)))
    staged = staged.withColumn(_REASON, reason)
    valid = staged.where(F.col(_REASON).isNull()).select(
        S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.TS, S.SESSION_ID)
    rejected = staged.where(F.col(_REASON).isNotNull()).select(S.RAW, F.col(_REASON).alias(S.REASON))
    return valid, rejected


def check_rejected_share(n_read: int, n_rejected: int, max_share: float) -> None:
    if n_read == 0:
        raise DataQualityError("no events in the look-back window: is the input partition there?")
    share = n_rejected / n_read
    if share > max_share:
        raise DataQualityError(
            f"{n_rejected} of {n_read} events ({share:.1%}) were rejected, above the configured "
            f"maximum of {max_share:.1%} (sequences.max_rejected_share); see events_rejected")


# --- 2. cleaning ---------------------------------------------------------------------------------

def deduplicate(events: DataFrame) -> DataFrame:
    """Drop exact duplicate events (same user, item, type, timestamp and session)."""
    return events.dropDuplicates([S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.TS, S.SESSION_ID])


def filter_event_types(events: DataFrame, event_types: list[str]) -> DataFrame:
    return events.where(F.col(S.EVENT_TYPE).isin(*event_types))


def _user_order() -> Window:
    return Window.partitionBy(S.USER_ID).orderBy(S.TS, S.ITEM_ID, S.EVENT_TYPE)


def collapse_repeats(events: DataFrame) -> DataFrame:
    """Keep only the first of consecutive events of a user on the same item (view, cart, purchase
    of one item is one step of the sequence)."""
    previous = F.lag(S.ITEM_ID).over(_user_order())
    return (events.withColumn("_prev", previous)
            .where(F.col("_prev").isNull() | (F.col("_prev") != F.col(S.ITEM_ID)))
            .drop("_prev"))


def apply_min_support(events: DataFrame, min_item: int, min_user: int) -> DataFrame:
    """One round of minimum support: drop items with < min_item events, then users with < min_user."""
    items = events.groupBy(S.ITEM_ID).agg(F.count(F.lit(1)).alias("_n")).where(F.col("_n") >= min_item)
    kept = events.join(items.select(S.ITEM_ID), S.ITEM_ID, "left_semi")
    users = kept.groupBy(S.USER_ID).agg(F.count(F.lit(1)).alias("_n")).where(F.col("_n") >= min_user)
    return kept.join(users.select(S.USER_ID), S.USER_ID, "left_semi")


def iterate_min_support(events: DataFrame, min_item: int, min_user: int, max_rounds: int) -> tuple[DataFrame, int]:
    """Repeat :func:`apply_min_support` until no row is dropped or ``max_rounds`` is reached.

    Each round is materialised (local checkpoint) so the plan does not grow with the rounds. Returns
    the filtered events and the number of rounds run."""
    current = events.localCheckpoint()
    n = current.count()
    for round_no in range(1, max_rounds + 1):
        nxt = apply_min_support(current, min_item, min_user).localCheckpoint()
        n_next = nxt.count()
        current = nxt
        if n_next == n:
            return current, round_no
        n = n_next
    return current, max_rounds


def sessionize(events: DataFrame, gap_minutes: int) -> DataFrame:
    """Assign ``session_id = <user>-<k>``: a new session starts after ``gap_minutes`` of inactivity."""
    order = _user_order()
    gap = F.col(S.TS).cast("long") - F.lag(F.col(S.TS).cast("long")).over(order)
    new_session = F.when(gap.isNull() | (gap > gap_minutes * 60), 1).otherwise(0)
    number = F.sum("_new").over(order.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    return (events.withColumn("_new", new_session)
            .withColumn(S.SESSION_ID, F.concat_ws("-", F.col(S.USER_ID), number.cast("string")))
            .drop("_new"))


# --- 3. vocabulary -------------------------------------------------------------------------------

def item_counts(events: DataFrame, weights: Optional[dict[str, float]] = None) -> DataFrame:
    """Popularity per item_id in the window; events may be weighted by type."""
    weight = F.lit(1.0)
    for event_type, w in (weights or {}).items():
        weight = F.when(F.col(S.EVENT_TYPE) == event_type, F.lit(float(w))).otherwise(weight)
    return events.groupBy(S.ITEM_ID).agg(F.round(F.sum(weight)).cast("long").alias(S.COUNT))


def update_item_index(previous: Optional[DataFrame], counts: DataFrame, ds: str) -> DataFrame:
    """New version of the vocabulary for night ``ds``.

    Items of ``previous`` keep their ``item_idx`` and ``first_seen_ds`` (also when absent tonight: an
    item that disappears and returns keeps its index); new items are appended after the current
    maximum, most popular first, ties by item_id. ``count`` is tonight's window count (0 if absent)."""
    if previous is None:
        previous = counts.sparkSession.createDataFrame([], S.ITEM_INDEX_SCHEMA)
    old = previous.select(S.ITEM_ID, S.ITEM_IDX, S.FIRST_SEEN_DS)
    max_idx = old.agg(F.coalesce(F.max(S.ITEM_IDX), F.lit(0)).alias("_max"))
    new_items = (counts.join(old, S.ITEM_ID, "left_anti").crossJoin(max_idx)
                 .withColumn(S.ITEM_IDX, (F.col("_max") + F.row_number().over(
                     Window.orderBy(F.desc(S.COUNT), F.asc(S.ITEM_ID)))).cast("int"))
                 .select(S.ITEM_ID, S.ITEM_IDX, F.lit(ds).alias(S.FIRST_SEEN_DS)))
    index = old.unionByName(new_items)
    return (index.join(counts, S.ITEM_ID, "left")
            .select(S.ITEM_ID, S.ITEM_IDX, S.FIRST_SEEN_DS,
                    F.coalesce(F.col(S.COUNT), F.lit(0)).cast("long").alias(S.COUNT),
                    F.lit(ds).alias(S.VERSION)))


# --- 4. sequences and splits ---------------------------------------------------------------------

def build_user_sequences(events: DataFrame, index: DataFrame, ds: str, max_history: int) -> DataFrame:
    """One row per user: item indices and timestamps in (ts, item_id, event_type) order, the last
    ``max_history`` kept; ``n_events`` counts the events in the window before the cap."""
    indexed = events.join(index.select(S.ITEM_ID, S.ITEM_IDX), S.ITEM_ID)
    ordered = F.array_sort(F.collect_list(F.struct(S.TS, S.ITEM_ID, S.EVENT_TYPE, S.ITEM_IDX)))
    capped = F.slice(F.col("_events"), F.greatest(F.size("_events") - max_history + 1, F.lit(1)),
                     max_history)
    return (indexed.groupBy(S.USER_ID).agg(ordered.alias("_events"))
            .select(S.USER_ID,
                    F.transform(capped, lambda e: e[S.ITEM_IDX]).alias(S.ITEM_IDX),
                    F.transform(capped, lambda e: e[S.TS]).alias(S.TS),
                    F.size("_events").alias(S.N_EVENTS),
                    F.lit(ds).alias(S.DS)))


SPLIT_SCHEMA = "user_id string, train array<int>, val_history array<int>, val_target int, " \
               "test_history array<int>, test_target int"


def split_leave_last_out(sequences: DataFrame, validation_fraction: float = 1.0, seed: int = 0) -> DataFrame:
    """Per user: test = last item, validation = second-to-last, train = the rest. Users with fewer
    than 3 events only contribute training data (nothing of theirs is held out). With
    ``validation_fraction`` < 1 only a seeded sample of users gives up its second-to-last item for
    validation; the others train on it (the test items stay out of training for everyone)."""
    items = F.col(S.ITEM_IDX)
    n = F.size(items)
    held_out = n >= 3
    validates = held_out & _sampled(validation_fraction, seed)
    return sequences.select(
        S.USER_ID,
        F.when(validates, F.slice(items, 1, n - 2)).when(held_out, F.slice(items, 1, n - 1))
        .otherwise(items).alias("train"),
        F.when(validates, F.slice(items, 1, n - 2)).alias("val_history"),
        F.when(validates, F.element_at(items, -2)).alias("val_target"),
        F.when(held_out, F.slice(items, 1, n - 1)).alias("test_history"),
        F.when(held_out, F.element_at(items, -1)).alias("test_target"))


def _sampled(fraction: float, seed: int) -> Column:
    """A seeded, partitioning-independent sample of ``fraction`` of the users."""
    if not 0 < fraction <= 1:
        raise ValueError(f"sequences.validation_fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return F.lit(True)  # the default: every user, no hash per row
    return F.pmod(F.xxhash64(F.lit(seed), F.col(S.USER_ID)), F.lit(10_000)) < F.lit(round(fraction * 10_000))


def split_validation_only(sequences: DataFrame, fraction: float = 1.0, seed: int = 0) -> DataFrame:
    """Validation = the last item of a seeded ``fraction`` of the users, train = everything else; no
    test split. For data whose test set lies outside the pipeline (a session benchmark's test file, a
    later night scored online): the model trains on the freshest events, and on short sessions a
    fraction < 1 keeps most last items in training (one per session is a third of yoochoose's targets)."""
    items = F.col(S.ITEM_IDX)
    n = F.size(items)
    held_out = (n >= 2) & _sampled(fraction, seed)
    return sequences.select(
        S.USER_ID,
        F.when(held_out, F.slice(items, 1, n - 1)).otherwise(items).alias("train"),
        F.when(held_out, F.slice(items, 1, n - 1)).alias("val_history"),
        F.when(held_out, F.element_at(items, -1)).alias("val_target"),
        F.lit(None).cast("array<int>").alias("test_history"),
        F.lit(None).cast("int").alias("test_target"))


def split_temporal(sequences: DataFrame, ds: str, cutoff_days: int) -> DataFrame:
    """Global temporal split: test period = the last ``cutoff_days`` before the end of ``ds``,
    validation = the ``cutoff_days`` before that. Train holds events before the validation cut-off;
    a user's first event in a held-out period is the query target, given everything before it."""
    test_cut = day_end(ds) - dt.timedelta(days=cutoff_days)
    val_cut = test_cut - dt.timedelta(days=cutoff_days)
    n_before = lambda cut: F.size(F.filter(F.col(S.TS), lambda t: t < F.lit(cut)))  # noqa: E731
    n_val, n_test = n_before(val_cut), n_before(test_cut)
    items, n = F.col(S.ITEM_IDX), F.size(F.col(S.ITEM_IDX))
    has_val = (n_test > n_val) & (n_val > 0)
    has_test = (n > n_test) & (n_test > 0)
    return sequences.select(
        S.USER_ID,
        F.slice(items, 1, n_val).alias("train"),
        F.when(has_val, F.slice(items, 1, n_val)).alias("val_history"),
        F.when(has_val, F.element_at(items, n_val + 1)).alias("val_target"),
        F.when(has_test, F.slice(items, 1, n_test)).alias("test_history"),
        F.when(has_test, F.element_at(items, n_test + 1)).alias("test_target"))


def split_sequences(sequences: DataFrame, split: str, ds: str, cutoff_days: int,
                    validation_fraction: float = 1.0, seed: int = 0) -> DataFrame:
    if split == LEAVE_LAST_OUT:
        return split_leave_last_out(sequences, validation_fraction, seed)
    if split == TEMPORAL:
        return split_temporal(sequences, ds, cutoff_days)
    if split == VALIDATION_ONLY:
        return split_validation_only(sequences, validation_fraction, seed)
    raise ValueError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")


def _left_pad(items: Column, length: int) -> Column:
    tail = F.slice(items, F.greatest(F.size(items) - length + 1, F.lit(1)), length)
    return F.concat(F.array_repeat(F.lit(0), F.lit(length) - F.size(tail)), tail)


def eval_examples(splits: DataFrame, which: str, window_length: int) -> DataFrame:
    """Held-out queries of ``which`` ('val' or 'test'): the last L items of the history (left-padded),
    the target, and every item of the history (to mask in full ranking)."""
    history, target = F.col(f"{which}_history"), F.col(f"{which}_target")
    return (splits.where(target.isNotNull())
            .select(S.USER_ID,
                    _left_pad(history, window_length).cast("array<int>").alias(S.INPUT),
                    target.cast("int").alias(S.TARGET),
                    F.array_sort(F.array_distinct(history)).cast("array<int>").alias(S.SEEN)))


def transition_counts(splits: DataFrame) -> DataFrame:
    """(prev_idx, next_idx, count): how often ``next_idx`` directly followed ``prev_idx`` in the
    ``train`` sequences, i.e. exactly the (input, target) pairs of the training windows, each once.
    Held-out items never enter it, so a model reading it learns nothing about its test targets."""
    seq, m = F.col("train"), F.size(F.col("train"))
    pairs = splits.where(m >= 2).select(F.explode(F.arrays_zip(
        F.slice(seq, 1, m - 1).alias("a"), F.slice(seq, 2, m - 1).alias("b"))).alias("p"))
    return (pairs.groupBy(F.col("p.a").cast("int").alias(S.PREV_IDX), F.col("p.b").cast("int").alias(S.NEXT_IDX))
            .agg(F.count(F.lit(1)).alias(S.COUNT)))


# --- 5. training windows and negatives -----------------------------------------------------------

def training_windows(splits: DataFrame, window_length: int, stride: int) -> DataFrame:
    """Windows of length L over each training sequence, taken from the end with step ``stride``.

    ``input[t]`` predicts ``target[t]`` (the next item). Where windows overlap, a target is kept only
    in the later window (more context), so every training position is a target exactly once."""
    if not 1 <= stride <= window_length:
        raise ValueError(f"stride must be in [1, window_length]; got {stride} for L={window_length}")
    L = window_length
    seq, m = F.col("train"), F.size(F.col("train"))
    windows = (splits.where(m >= 2)
               .select(S.USER_ID, seq.alias("_s"), m.alias("_m"),
                       F.explode(F.sequence(m - 1, F.lit(1), F.lit(-stride))).alias("_end")))
    start = F.greatest(F.col("_end") - L, F.lit(0))
    length = F.col("_end") - start
    inputs = F.slice("_s", start + 1, length)
    targets = F.slice("_s", start + 2, length)
    # Target j (0-based position in the sequence) is also in the next, later window when it exists.
    later_covers = lambda j: (F.col("_end") < F.col("_m") - 1) & (j >= F.col("_end") + stride - L + 1)  # noqa: E731
    masked = F.transform(targets, lambda x, i: F.when(later_covers(start + 1 + i), F.lit(0)).otherwise(x))
    pad = F.array_repeat(F.lit(0), F.lit(L) - length)
    return windows.select(
        S.USER_ID, F.col("_end").alias("window_end"),
        F.concat(pad, inputs).cast("array<int>").alias(S.INPUT),
        F.concat(pad, masked).cast("array<int>").alias(S.TARGET))


def negative_cdf(counts: pd.DataFrame, num_items: int, alpha: float) -> np.ndarray:
    """Cumulative sampling distribution over item indices 0..num_items-1 with p ~ count^alpha
    (alpha=0: uniform over items with a count); index 0 (padding) has probability 0."""
    weights = np.zeros(num_items, dtype=np.float64)
    idx = counts[S.ITEM_IDX].to_numpy(dtype=np.int64)
    cnt = counts[S.COUNT].to_numpy(dtype=np.float64)
    keep = (cnt > 0) & (idx > 0)
    weights[idx[keep]] = cnt[keep] ** alpha
    if weights.sum() <= 0:
        raise DataQualityError("no item has a positive count: cannot sample negatives")
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def add_negatives(windows: DataFrame, cdf: np.ndarray, num_negatives: int, seed: int,
                  window_length: int) -> DataFrame:
    """Append ``negatives``: K items drawn from ``cdf``, none equal to a target of the window.

    Each row's generator is seeded from (seed, user_id, window_end) hashed in Spark, so the draws do
    not depend on partitioning or row order."""
    k = num_negatives
    n_sampleable = int((np.diff(np.concatenate([[0.0], cdf])) > 0).sum())
    if n_sampleable <= window_length:
        raise DataQualityError(f"only {n_sampleable} items can be sampled as negatives, not more than the "
                               f"{window_length} positives a window may hold: the catalogue is too small")
    cdf_b = windows.sparkSession.sparkContext.broadcast(cdf)

    def sample(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        table = cdf_b.value
        for batch in batches:
            out = []
            for row_seed, targets in zip(batch["_seed"].to_numpy(), batch[S.TARGET]):
                positives = set(int(t) for t in targets if t)
                rng = np.random.default_rng(int(row_seed) & 0xFFFF_FFFF_FFFF_FFFF)
                chosen: list[int] = []
                while len(chosen) < k:
                    draw = np.searchsorted(table, rng.random(2 * k), side="right")
                    chosen.extend(int(d) for d in draw if d not in positives and d > 0)
                out.append(np.asarray(chosen[:k], dtype=np.int32))
            yield batch.drop(columns=["_seed"]).assign(**{S.NEGATIVES: out})

    schema = T.StructType([f for f in windows.schema.fields]
                          + [T.StructField(S.NEGATIVES, T.ArrayType(T.IntegerType()), True)])
    seeded = windows.withColumn("_seed", F.xxhash64(F.lit(seed), F.col(S.USER_ID), F.col("window_end")))
    return seeded.mapInPandas(sample, schema=schema)
