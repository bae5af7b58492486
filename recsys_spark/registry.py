"""The model registry: ``<storage.root>/models/registry.json`` listing every trained version.

Training only adds (or refreshes its own) entries; which version serves is the ``production``
pointer, moved by :func:`set_production` from the scoring gate. Every write is a locked
read-modify-write that lands with an atomic rename, so concurrent trainers never lose entries and a
reader never sees half a file.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from recsys_spark.errors import NotFoundError

REGISTRY_FILE = "registry.json"


def models_root(storage_root: str | Path) -> Path:
    return Path(storage_root) / "models"


def load_registry(root: str | Path) -> dict[str, Any]:
    """``{"production": version or None, "versions": {version: entry}}`` (empty when none yet)."""
    path = Path(root) / REGISTRY_FILE
    if not path.exists():
        return {"production": None, "versions": {}}
    return json.loads(path.read_text())


@contextmanager
def _locked(root: Path) -> Iterator[dict[str, Any]]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / (REGISTRY_FILE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        registry = load_registry(root)
        yield registry
        tmp = root / (REGISTRY_FILE + ".tmp")
        tmp.write_text(json.dumps(registry, indent=2, sort_keys=True))
        os.replace(tmp, root / REGISTRY_FILE)


def register(root: str | Path, version: str, metrics: dict[str, Any], **info: Any) -> dict[str, Any]:
    """Add ``version`` (re-registering the same version replaces only its own entry).

    ``info`` carries ds, item_index_version, artifact path and the like; ``created_at`` is added.
    """
    entry = {"metrics": metrics, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(), **info}
    with _locked(Path(root)) as registry:
        registry["versions"][version] = entry
    return entry


def set_production(root: str | Path, version: str, reason: str = "") -> None:
    """Point production at ``version``; every move is appended to ``history`` (for rollback/audit)."""
    with _locked(Path(root)) as registry:
        if version not in registry["versions"]:
            raise NotFoundError(f"model version {version!r} is not registered in {root}")
        registry["production"] = version
        registry.setdefault("history", []).append(
            {"version": version, "at": dt.datetime.now(dt.timezone.utc).isoformat(), "reason": reason})


def require_version(root: str | Path, version: str) -> dict[str, Any]:
    """The registry entry of ``version``; a version nobody registered is the user's typo, not a bug."""
    entry = load_registry(root)["versions"].get(version)
    if entry is None:
        raise NotFoundError(f"model version {version!r} is not registered in {root}")
    return entry


def previous_production(root: str | Path) -> Optional[str]:
    """The production version before the current one (None if there never was another)."""
    registry = load_registry(root)
    current = registry["production"]
    earlier = [h["version"] for h in registry.get("history", []) if h["version"] != current]
    return earlier[-1] if earlier else None


def production_version(root: str | Path) -> Optional[str]:
    return load_registry(root)["production"]
