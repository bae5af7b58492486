"""Publish records: what a serving stage (score, similar_items) published for a night, readable
without Spark or the metastore.

Right after the metastore points partition ``ds`` at a new run directory, the stage writes
``<storage.root>/published/<table>/ds=<ds>.json`` (table, ds, location, rows, model_version,
published_at) through a temporary file and a rename, so a reader sees the previous record or the new
one, never half of one. ``recsys recommend`` and ``recsys similar`` read the record and the Parquet
files at its location with pyarrow: one user's or item's list in about a second instead of a JVM and a
metastore for one row.

This module must not import pyspark (``tests/test_recommend.py`` checks it).
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from recsys_spark.errors import NotFoundError

PUBLISHED_DIR = "published"
RECOMMENDATIONS = "recommendations"  # the tables' names in storage.database
SIMILAR_ITEMS = "similar_items"
RECOMMENDATIONS_LIVE = "recommendations_live"
LIVE_RECORD = "live.json"


class NotPublishedError(NotFoundError):
    """No publish record for the night asked for (never scored, or scored before records existed)."""

    exit_code = 1


def record_dir(storage_root: str | Path, table: str) -> Path:
    return Path(storage_root) / PUBLISHED_DIR / table.rsplit(".", 1)[-1]


def write_record(storage_root: str | Path, table: str, ds: str, location: str, rows: int,
                 model_version: str) -> Path:
    """Atomically replace the night's record (a re-run or a rollback re-score rewrites it)."""
    path = record_dir(storage_root, table) / f"ds={ds}.json"
    record = {"table": table, "ds": ds, "location": location, "rows": rows, "model_version": model_version,
              "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    _write_json(path, record)
    return path


def read_record(storage_root: str | Path, table: str, ds: Optional[str] = None) -> dict[str, Any]:
    """The record of night ``ds`` (default: the latest published night)."""
    directory = record_dir(storage_root, table)
    if ds is None:
        nights = sorted(p.stem.removeprefix("ds=") for p in directory.glob("ds=*.json"))
        if not nights:
            raise NotPublishedError(f"no night of {table} has been published yet (no record in {directory})")
        ds = nights[-1]
    path = directory / f"ds={ds}.json"
    if not path.exists():
        raise NotPublishedError(f"nothing published for ds={ds} in {table} (no record {path}): "
                                "run score for this night first")
    return json.loads(path.read_text())


def read_user(record: dict[str, Any], user_id: str) -> Optional[dict[str, Any]]:
    """One user's published row (user_id, recs, source, model_version, generated_at) or None."""
    return read_row(record, "user_id", user_id)


def read_row(record: dict[str, Any], key: str, value: str) -> Optional[dict[str, Any]]:
    """The published row whose ``key`` column equals ``value``, or None."""
    import pyarrow.dataset as pads

    rows = open_dataset(record["location"]).to_table(filter=pads.field(key) == value).to_pylist()
    return rows[0] if rows else None


def open_dataset(location: str):
    """The Parquet files at a published location (a path, a ``file:`` URI or another filesystem's URI)
    as a ``pyarrow.dataset``; Spark's _SUCCESS and .crc files are skipped (pyarrow ignores names
    starting with "_" or ".")."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        filesystem, path = pafs.LocalFileSystem(), parsed.path if parsed.scheme else location
    else:
        filesystem, path = pafs.FileSystem.from_uri(location)
    return pads.dataset(path, filesystem=filesystem, format="parquet")


def _write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def live_record_path(storage_root: str | Path) -> Path:
    return record_dir(storage_root, RECOMMENDATIONS_LIVE) / LIVE_RECORD


def write_live_record(storage_root: str | Path, record: dict[str, Any]) -> None:
    """The live refresh's record (base night, model, the committed micro-batch directories in order),
    replaced atomically after each commit (recsys_spark.live)."""
    _write_json(live_record_path(storage_root), record)


def read_live_record(storage_root: str | Path) -> Optional[dict[str, Any]]:
    path = live_record_path(storage_root)
    return json.loads(path.read_text()) if path.exists() else None


def read_live_user(record: dict[str, Any], user_id: str) -> Optional[dict[str, Any]]:
    """A user's newest live row (user_id, recs, source, model_version, item_idx, events_folded,
    last_ts, updated_at) or None: the micro-batch directories are read newest first."""
    for location in reversed(record["locations"]):
        row = read_row({"location": location}, "user_id", user_id)
        if row is not None:
            return row
    return None
