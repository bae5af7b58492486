"""Single-process pandas implementation of the build_sequences steps, for the scaling comparison.

Same steps and parameters as recsys_spark.build (validate, deduplicate, filter types, collapse repeats,
iterative minimum support, vocabulary, capped sequences, leave-last-out split, training windows with
popularity^alpha negatives), written the way a data scientist would in pandas: everything in memory.
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from recsys_spark import schemas as S
from recsys_spark.config import SequencesConfig


def build(events: pd.DataFrame, ds: str, cfg: SequencesConfig) -> dict:
    end = pd.Timestamp(ds) + pd.Timedelta(days=1)
    bad = (events[S.USER_ID].isna() | events[S.ITEM_ID].isna() | ~events[S.EVENT_TYPE].isin(S.EVENT_TYPES)
           | events[S.TS].isna() | (events[S.TS] >= end))
    df = events[~bad].drop_duplicates([S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.TS, S.SESSION_ID])
    df = df[df[S.EVENT_TYPE].isin(cfg.event_types)]
    df = df.sort_values([S.USER_ID, S.TS, S.ITEM_ID, S.EVENT_TYPE], kind="stable")
    if cfg.collapse_repeats:
        repeat = (df[S.USER_ID] == df[S.USER_ID].shift()) & (df[S.ITEM_ID] == df[S.ITEM_ID].shift())
        df = df[~repeat]
    for _ in range(cfg.max_support_rounds):
        n = len(df)
        df = df[df.groupby(S.ITEM_ID)[S.ITEM_ID].transform("size") >= cfg.min_item_support]
        df = df[df.groupby(S.USER_ID)[S.USER_ID].transform("size") >= cfg.min_user_support]
        if len(df) == n:
            break
    counts = df[S.ITEM_ID].value_counts()
    order = counts.reset_index().sort_values([S.COUNT, S.ITEM_ID], ascending=[False, True])
    index = pd.Series(np.arange(1, len(order) + 1, dtype=np.int32), index=order[S.ITEM_ID].to_numpy())
    df = df.assign(**{S.ITEM_IDX: index.reindex(df[S.ITEM_ID]).to_numpy()})
    users = df[S.USER_ID].to_numpy()
    items = df[S.ITEM_IDX].to_numpy()
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    sequences = {users[a]: items[a:b][-cfg.max_history:] for a, b in zip(bounds[:-1], bounds[1:])}

    num_items = len(index) + 1
    train_counts = np.zeros(num_items)
    rows = []
    L, stride, k = cfg.window_length, cfg.stride, cfg.num_negatives
    for user, seq in sequences.items():
        train = seq[:-2] if len(seq) >= 3 else seq
        np.add.at(train_counts, train, 1)
        m = len(train)
        for end_pos in range(m - 1, 0, -stride):
            start = max(end_pos - L, 0)
            inp = np.zeros(L, np.int32)
            tgt = np.zeros(L, np.int32)
            inp[L - (end_pos - start):] = train[start:end_pos]
            tgt[L - (end_pos - start):] = train[start + 1:end_pos + 1]
            if end_pos < m - 1:
                covered = np.arange(start + 1, end_pos + 1) >= end_pos + stride - L + 1
                tgt[L - (end_pos - start):][covered] = 0
            rows.append((user, end_pos, inp, tgt))
    weights = train_counts ** cfg.negative_alpha
    weights[0] = 0
    cdf = np.cumsum(weights) / weights.sum()
    negatives = []
    for user, end_pos, _, tgt in rows:
        rng = np.random.default_rng([cfg.seed, zlib.crc32(user.encode()), end_pos])
        positives = set(tgt[tgt > 0].tolist())
        chosen: list[int] = []
        while len(chosen) < k:
            chosen.extend(int(d) for d in np.searchsorted(cdf, rng.random(2 * k), side="right")
                          if d not in positives and d > 0)
        negatives.append(chosen[:k])
    examples = pd.DataFrame(rows, columns=[S.USER_ID, "window_end", S.INPUT, S.TARGET])
    examples[S.NEGATIVES] = negatives
    return {"users": len(sequences), "items": len(index), "training_examples": len(examples)}
