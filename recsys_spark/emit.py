"""New events into the live refresh's landing directory (``recsys emit-events``): explicit clicks of one
user, or synthetic traffic at a given rate. Spark-free: it stands in for a producer.

Each file is written under a hidden name and renamed into place, so the stream never reads half a file
(Spark's file source skips names starting with ``.``)."""
from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from recsys_spark import schemas as S
from recsys_spark.published import open_dataset


def write_event_file(directory: Path, events: list[dict], name: str) -> Path:
    """One JSON-lines file of ``events`` (user_id, item_id, event_type, ts as ISO text, session_id)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = directory / f".{name}.json.tmp"
    tmp.write_text("".join(json.dumps(e) + "\n" for e in events))
    os.replace(tmp, path)
    return path


def event(user: str, item: str, ts: dt.datetime, event_type: str = "view") -> dict:
    return {S.USER_ID: user, S.ITEM_ID: item, S.EVENT_TYPE: event_type,
            S.TS: ts.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds"), S.SESSION_ID: None}


def clicks(user: str, items: list[str], start: dt.datetime) -> list[dict]:
    """``user`` viewing ``items`` in order, one second apart."""
    return [event(user, item, start + dt.timedelta(seconds=i)) for i, item in enumerate(items)]


def night_population(location: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users of a published night and the items of their lists with how often each was recommended
    (synthetic traffic then looks like the catalogue's popular part)."""
    table = open_dataset(location).to_table(columns=[S.USER_ID, "recs"])
    users = np.array(table.column(S.USER_ID).to_pylist(), dtype=object)
    items, counts = np.unique(np.array([r[S.ITEM_ID] for recs in table.column("recs").to_pylist() for r in recs],
                                       dtype=object), return_counts=True)
    return users, items, counts / counts.sum()


def emit_traffic(directory: Path, users: np.ndarray, items: np.ndarray, weights: np.ndarray, rate: float,
                 seconds: float, files_per_second: float, seed: int,
                 on_file: Optional[Callable[[Path, int, float], None]] = None) -> int:
    """``rate`` events/s for ``seconds``: ``files_per_second`` files, each stamped with the wall clock
    (events carry their event time, now). Returns the number of events written."""
    rng = np.random.default_rng(seed)
    per_file = max(1, round(rate / files_per_second))
    n_files = max(1, round(seconds * files_per_second))
    started, written = time.time(), 0
    for f in range(n_files):
        due = started + f / files_per_second
        time.sleep(max(0.0, due - time.time()))
        now = dt.datetime.now(dt.timezone.utc)
        picked_users = rng.choice(users, per_file)
        picked_items = rng.choice(items, per_file, p=weights)
        batch = [event(u, i, now) for u, i in zip(picked_users, picked_items)]
        path = write_event_file(directory, batch, f"emit-{seed}-{f:08d}")
        written += per_file
        if on_file:
            on_file(path, per_file, time.time())
    return written
