"""The training feed interface: what the trainer needs from a reader of ``training_examples``.

Two implementations read the same Parquet dataset (``train.feed``): :mod:`training.petastorm_feed`
and :mod:`training.arrow_feed`; :func:`training.data.make_feed` picks one. Both shard it the same
way: row group ``i`` (files in path order, row groups in file order, which is petastorm 0.12.1's
``load_row_groups`` order for a Spark-written store) belongs to rank ``i % world_size``. Each rank
reads its shard once per epoch through the same seeded shuffling buffer (:meth:`Feed.epoch`), so
the implementations differ only in how a shard's rows arrive (:meth:`Feed._chunks`). With
``train.length_buckets`` > 1 that buffer hands out batches grouped by session length.

Equal steps on every rank: shards differ in size whenever row groups do, and a rank that runs out
of batches first would leave the others blocked in allreduce, so every rank runs
``min(shard rows) // batch_size`` steps (:func:`equal_steps`). The rows of a larger shard past
``steps * batch_size`` sit out that epoch; which ones changes every epoch with the seeded order.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from recsys_spark.schemas import INPUT, NEGATIVES, TARGET

log = logging.getLogger(__name__)

TRAIN_FIELDS = (INPUT, TARGET, NEGATIVES)


def shard_sizes(row_group_rows: Sequence[int], world_size: int, path: str | Path) -> list[int]:
    """Rows of each rank's shard, given every row group's rows in the shared row-group order."""
    if len(row_group_rows) < world_size:
        raise ValueError(f"{path} has {len(row_group_rows)} row groups, fewer than {world_size} shards: "
                         "rebuild it with more row groups (sequences.num_train_workers)")
    counts = [0] * world_size
    for index, rows in enumerate(row_group_rows):
        counts[index % world_size] += rows
    return counts


def equal_steps(counts: Sequence[int], batch_size: int, path: str | Path) -> int:
    """Full batches every rank can produce: the smallest shard's rows // batch_size (at least 1)."""
    steps = min(counts) // batch_size
    if steps < 1:
        raise ValueError(f"smallest shard of {path} has {min(counts)} rows (shards: {list(counts)}), "
                         f"less than one batch of {batch_size}: lower train.batch_size")
    log.info("shard rows %s -> %d steps of %d per epoch", list(counts), steps, batch_size)
    return steps


class Feed(ABC):
    """Exactly ``steps`` shuffled batches per epoch from this rank's shard, as int64 torch tensors.

    A subclass reads its dataset's row-group layout once (``shard_rows``: every rank's shard size)
    and yields this rank's rows per epoch in a seeded order; rows are then mixed in a shuffling
    buffer seeded by (seed, epoch, rank), so epoch ``e`` sees the same batches whether or not the
    run was resumed.
    """

    def __init__(self, path: str | Path, shard_rows: Sequence[int], batch_size: int, rank: int,
                 world_size: int, seed: int, shuffle_buffer: int, length_buckets: int = 1):
        if length_buckets < 1:
            raise ValueError(f"train.length_buckets must be at least 1, got {length_buckets}")
        self.path = path
        self.shard_rows = list(shard_rows)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.seed, self.shuffle_buffer, self.length_buckets = seed, shuffle_buffer, length_buckets
        self.steps = equal_steps(self.shard_rows, batch_size, path)

    @abstractmethod
    def _chunks(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """This rank's shard for ``epoch``, every row once, as int64 arrays [rows, width] per field
        of TRAIN_FIELDS; the consumer may stop early (the generator is then closed)."""

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        draw = self.length_buckets * self.batch_size
        capacity = max(self.shuffle_buffer, draw)
        buffer: dict[str, np.ndarray] = {}
        emitted = 0
        chunks = self._chunks(epoch)
        try:
            for chunk in chunks:
                for name in TRAIN_FIELDS:
                    column = chunk[name]
                    buffer[name] = column if name not in buffer else np.concatenate([buffer[name], column])
                while len(buffer[INPUT]) >= capacity and emitted < self.steps:
                    for batch in self._take(buffer, rng, min(draw, (self.steps - emitted) * self.batch_size)):
                        yield batch
                        emitted += 1
                if emitted == self.steps:
                    return
            while buffer and len(buffer[INPUT]) >= self.batch_size and emitted < self.steps:
                rows = min(draw, len(buffer[INPUT]), (self.steps - emitted) * self.batch_size)
                for batch in self._take(buffer, rng, rows - rows % self.batch_size):
                    yield batch
                    emitted += 1
        finally:
            chunks.close()
        if emitted < self.steps:
            raise RuntimeError(f"rank {self.rank} read only {emitted} of {self.steps} batches from "
                               f"{self.path}: did the dataset change during training?")

    def _take(self, buffer: dict[str, np.ndarray], rng: np.random.Generator,
              rows: int) -> list[dict[str, torch.Tensor]]:
        """``rows`` (a multiple of batch_size) random rows out of ``buffer`` as batches. With
        ``length_buckets`` > 1 they are grouped by input length (ties in draw order) and the
        batches come in a random order: the trainer runs the recurrence only as far as a batch's
        longest row, and short sessions no longer pay for the long ones they were batched with."""
        n = len(buffer[INPUT])
        pick = rng.choice(n, size=rows, replace=False)
        keep = np.ones(n, dtype=bool)
        keep[pick] = False
        if self.length_buckets > 1:
            lengths = np.count_nonzero(buffer[INPUT][pick], axis=1)
            pick = pick[np.argsort(lengths, kind="stable")]
        groups = pick.reshape(-1, self.batch_size)
        if self.length_buckets > 1:
            groups = groups[rng.permutation(len(groups))]
        batches = [{name: torch.from_numpy(buffer[name][group]) for name in TRAIN_FIELDS} for group in groups]
        for name in TRAIN_FIELDS:
            buffer[name] = buffer[name][keep]
        return batches
