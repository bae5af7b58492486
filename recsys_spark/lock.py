"""One run at a time per (stage, night): an exclusive lock file under ``<storage.root>/locks/``.

Two runs of the same stage for the same ``ds`` (a manual re-run while the scheduler's is still going,
an Airflow retry racing a zombie task) would overwrite each other's partitions and staging
directories. Every job takes :func:`exclusive_run` before it opens a SparkSession, so the loser
exits at once with the holder's pid, host and start time instead of touching the metastore.

The lock is ``fcntl.flock`` on ``<stage>.ds=<ds>.lock``: the kernel drops it when the holder exits
or is killed (SIGKILL, OOM), so a dead holder never leaves a stale lock behind; the file itself
stays (deleting it would let a third run lock a fresh inode while the second still holds the old
one) and only records who held it last. ``storage.root`` must be a filesystem whose ``flock``
works across the machines that run jobs (local disk, NFSv4).
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)

EXIT_LOCKED = 5
"""Exit status of a job that found its (stage, ds) already running."""


class RunLocked(RuntimeError):
    """Another run of this stage for this night holds the lock."""


def lock_path(storage_root: str | Path, stage: str, ds: str) -> Path:
    return Path(storage_root) / "locks" / f"{stage}.ds={ds}.lock"


@contextmanager
def exclusive_run(storage_root: str | Path, stage: str, ds: str) -> Iterator[Path]:
    """Hold the (``stage``, ``ds``) lock for the ``with`` block; raise :class:`RunLocked` naming the
    holder if another live process has it."""
    path = lock_path(storage_root, stage, ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown (starting up)"
        os.close(fd)
        raise RunLocked(f"another {stage} run for ds={ds} is in progress: {holder}; lock {path}. "
                        "Wait for it to finish, or stop it first (its lock is released when it exits)") from None
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "stage": stage, "ds": ds,
                  "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        os.close(fd)


def run_exclusive(storage_root: str | Path, stage: str, ds: str, body: Callable[[], int]) -> int:
    """A job's main under the (``stage``, ``ds``) lock: ``body()``'s exit status, or
    :data:`EXIT_LOCKED` with the holder logged when another run has the lock."""
    try:
        with exclusive_run(storage_root, stage, ds):
            return body()
    except RunLocked as exc:
        log.error("%s", exc)
        return EXIT_LOCKED
