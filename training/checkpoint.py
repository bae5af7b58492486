"""Per-epoch training checkpoints that survive a crash at any point.

Each checkpoint is written to a temp file, fsynced and renamed into place, then a ``.sha256``
sidecar is renamed in beside it. A checkpoint counts only when its sidecar matches its bytes and it
loads, so a partial or corrupted latest file (crash mid-write, bad disk) falls back to the previous
epoch's instead of breaking the resume.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from pathlib import Path
from typing import Any, Optional

import torch

log = logging.getLogger(__name__)

_NAME = re.compile(r"^epoch-(\d{4})\.pt$")


class ArchitectureMismatch(ValueError):
    """A resume was asked for with a model architecture other than the checkpoint's."""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class CheckpointStore:
    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory)
        self.keep = max(keep, 2)  # the previous one is the fallback when the latest is corrupt

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:04d}.pt"

    def epochs(self) -> list[int]:
        if not self.directory.exists():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name)))

    def save(self, epoch: int, state: dict[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        path = self.path(epoch)
        _write_atomic(path, data)
        _write_atomic(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest().encode())
        for old in self.epochs()[:-self.keep]:
            for stale in (self.path(old), self.path(old).with_name(self.path(old).name + ".sha256")):
                stale.unlink(missing_ok=True)
        return path

    def load(self, epoch: int) -> Optional[dict[str, Any]]:
        """The checkpoint of ``epoch`` if it is complete and intact, else None (with a warning)."""
        path = self.path(epoch)
        sidecar = path.with_name(path.name + ".sha256")
        try:
            data = path.read_bytes()
            expected = sidecar.read_text().strip()
        except OSError as exc:
            log.warning("checkpoint %s unreadable: %s", path, exc)
            return None
        if hashlib.sha256(data).hexdigest() != expected:
            log.warning("checkpoint %s does not match its checksum (partial or corrupt); skipping", path)
            return None
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not usable"
            log.warning("checkpoint %s does not load (%s); skipping", path, exc)
            return None

    def latest_valid_epoch(self) -> Optional[int]:
        for epoch in reversed(self.epochs()):
            if self.load(epoch) is not None:
                return epoch
        return None

    def clear(self) -> None:
        """Drop checkpoints of an earlier run of this version (a fresh run must not resume them)."""
        for epoch in self.epochs():
            for stale in (self.path(epoch), self.path(epoch).with_name(self.path(epoch).name + ".sha256")):
                stale.unlink(missing_ok=True)


def check_architecture(saved: dict[str, Any], current: dict[str, Any], source: Path) -> None:
    if saved != current:
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ArchitectureMismatch(
            f"cannot resume from {source}: model architecture changed ({detail}); train a new "
            "model version instead of --resume")
