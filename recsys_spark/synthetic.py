"""Synthetic event logs, generated in Spark so they scale to 10M+ events without touching the driver.

Structure planted in the data (so that a sequence model has something to learn):
* item popularity is Zipf-like and user activity heavy-tailed (power transforms of uniforms);
* each session has a latent *intent*; with ``transition_prob`` the next item is the intent's successor
  of the current item (a fixed hash), otherwise a popularity draw. Knowing the previous transitions
  tells a model the intent, which a last-item transition table cannot know;
* the catalogue and the user base grow every day after ``cfg.epoch`` (new items and users each night);
* event types: mostly views, some carts, fewer purchases.

Randomness is counter-based (a SplitMix64 hash of seed, day, session, step and stream), so every event
depends only on those keys: the output is identical for any partitioning, and re-generating a day
reproduces it exactly.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from recsys_spark import schemas as S
from recsys_spark.config import SyntheticConfig

MAX_SESSION_LENGTH = 30
MAX_GAP_SECONDS = 110  # 30 steps x 110 s < 1 h, so a session never crosses midnight (see start time)

_STREAM_LENGTH, _STREAM_USER, _STREAM_START, _STREAM_INTENT = 1, 2, 3, 4
_STREAM_FOLLOW, _STREAM_POP, _STREAM_GAP, _STREAM_TYPE = 5, 6, 7, 8
_STREAM_SUCCESSOR = 9

_GENERATED_SCHEMA = ("user_id string, item_id string, event_type string, ts timestamp, "
                     "session_id string, ds string")


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash(*keys: np.ndarray | int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = np.uint64(0x243F6A8885A308D3)
        for key in keys:
            h = _splitmix(np.asarray(h, dtype=np.uint64) ^ np.asarray(key).astype(np.uint64))
        return h


def _uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) that depend only on ``keys``."""
    return (_hash(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _power_draw(u: np.ndarray, n: np.ndarray | int, power: float) -> np.ndarray:
    """Index in [0, n) with density decreasing like a power law: index 0 is the most frequent."""
    return np.minimum(np.floor(np.asarray(n) * u ** power), np.asarray(n) - 1).astype(np.int64)


def _days_since_epoch(cfg: SyntheticConfig, day: dt.date) -> int:
    return max(0, (day - dt.date.fromisoformat(cfg.epoch)).days)


def catalogue_size(cfg: SyntheticConfig, day: dt.date) -> int:
    """Items that exist on ``day``: the base catalogue plus the ones released since ``cfg.epoch``."""
    return cfg.n_items + cfg.new_items_per_day * _days_since_epoch(cfg, day)


def user_base_size(cfg: SyntheticConfig, day: dt.date) -> int:
    return cfg.n_users + cfg.new_users_per_day * _days_since_epoch(cfg, day)


def _sessions_per_day(cfg: SyntheticConfig) -> int:
    return max(1, round(cfg.events_per_day / cfg.mean_session_length))


def _generate_sessions(cfg: SyntheticConfig, day_ordinals: np.ndarray, session_no: np.ndarray) -> pd.DataFrame:
    """Vectorised generation of every event of the given (day, session) pairs."""
    seed = cfg.seed
    n = len(session_no)
    days = [dt.date.fromordinal(int(o)) for o in day_ordinals]
    n_items = np.array([catalogue_size(cfg, d) for d in days], dtype=np.int64)
    n_users = np.array([user_base_size(cfg, d) for d in days], dtype=np.int64)
    keys = (seed, day_ordinals, session_no)

    # Session length: 2 + geometric, mean ~= mean_session_length, capped.
    p_stop = 1.0 / max(cfg.mean_session_length - 1.0, 1.0)
    u_len = np.maximum(_uniform(*keys, _STREAM_LENGTH), 1e-12)
    length = np.minimum(2 + np.floor(np.log(u_len) / np.log1p(-min(p_stop, 0.999))), MAX_SESSION_LENGTH)
    length = length.astype(np.int64)

    user = _power_draw(_uniform(*keys, _STREAM_USER), n_users, cfg.user_activity_power)
    start = np.floor(_uniform(*keys, _STREAM_START) * (86400 - 3600)).astype(np.int64)
    intent = np.floor(_uniform(*keys, _STREAM_INTENT) * cfg.intents).astype(np.int64)
    base_items = np.int64(cfg.n_items)

    items = np.zeros((n, MAX_SESSION_LENGTH), dtype=np.int64)
    offsets = np.zeros((n, MAX_SESSION_LENGTH), dtype=np.int64)
    current = _power_draw(_uniform(*keys, _STREAM_POP, 0), n_items, cfg.item_popularity_power)
    items[:, 0] = current
    for step in range(1, MAX_SESSION_LENGTH):
        follow = _uniform(*keys, _STREAM_FOLLOW, step) < cfg.transition_prob
        successor = (_hash(seed, _STREAM_SUCCESSOR, current, intent) % np.uint64(base_items)).astype(np.int64)
        popular = _power_draw(_uniform(*keys, _STREAM_POP, step), n_items, cfg.item_popularity_power)
        current = np.where(follow, successor, popular)
        items[:, step] = current
        gap = 5 + np.floor(_uniform(*keys, _STREAM_GAP, step) * (MAX_GAP_SECONDS - 5)).astype(np.int64)
        offsets[:, step] = offsets[:, step - 1] + gap

    u_type = _uniform(seed, day_ordinals[:, None], session_no[:, None], _STREAM_TYPE,
                      np.arange(MAX_SESSION_LENGTH)[None, :])
    event_type = np.where(u_type < cfg.cart_prob * cfg.purchase_prob, "purchase",
                          np.where(u_type < cfg.cart_prob, "cart", "view"))

    mask = np.arange(MAX_SESSION_LENGTH)[None, :] < length[:, None]
    row, _ = np.nonzero(mask)
    day_start = np.array([(d - dt.date(1970, 1, 1)).days * 86400 for d in days], dtype=np.int64)
    epoch_seconds = (day_start + start)[:, None] + offsets
    ds = np.array([d.isoformat() for d in days], dtype=object)
    return pd.DataFrame({
        S.USER_ID: np.char.add("u", user[row].astype(str)).astype(object),
        S.ITEM_ID: np.char.add("i", items[mask].astype(str)).astype(object),
        S.EVENT_TYPE: event_type[mask].astype(object),
        S.TS: pd.to_datetime(epoch_seconds[mask], unit="s"),
        S.SESSION_ID: (pd.Series(ds[row]).str.replace("-", "", regex=False) + "-"
                       + session_no[row].astype(str)).to_numpy(dtype=object),
        S.DS: ds[row],
    })


def generate_events(spark: SparkSession, cfg: SyntheticConfig, start: dt.date, end: dt.date) -> DataFrame:
    """Events for every day in ``[start, end]`` with the ``events`` table schema plus ``ds``."""
    if end < start:
        raise ValueError(f"synthetic range is empty: start {start} is after end {end}")
    per_day = _sessions_per_day(cfg)
    n_days = (end - start).days + 1
    first_ordinal = start.toordinal()

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            ids = batch["id"].to_numpy(dtype=np.int64)
            if len(ids):
                yield _generate_sessions(cfg, first_ordinal + ids // per_day, ids % per_day)

    sessions = spark.range(0, n_days * per_day, numPartitions=max(1, cfg.partitions * n_days))
    return sessions.mapInPandas(generate, schema=_GENERATED_SCHEMA)
