"""The training feed: Petastorm over the Spark-written ``training_examples`` Parquet, one shard per
rank, plus plain pyarrow readers for the small evaluation splits and item counts.

Equal steps on every rank: petastorm 0.12.1 (``Reader._partition_row_groups``) gives shard ``k`` the
row groups whose index in ``load_row_groups(dataset)`` satisfies ``index % shard_count == k``; the
seed only shuffles the read order, never the membership. Shards therefore differ in size whenever
row groups do, and a rank that runs out of batches first would leave the others blocked in
allreduce. :func:`shard_row_counts` replays that assignment from the Parquet footers, and every rank
runs ``min(shard rows) // batch_size`` steps per epoch.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import torch

from recsys_spark.schemas import COUNT, INPUT, ITEM_IDX, NEGATIVES, NEXT_IDX, PREV_IDX, SEEN, TARGET

log = logging.getLogger(__name__)

# petastorm 0.12.1 drives pyarrow 14's deprecated legacy dataset API (the only one it supports) and
# logs every footer scan of a Spark-written (non-petastorm) store at INFO: keep both out of job logs.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
logging.getLogger("petastorm").setLevel(logging.WARNING)

TRAIN_FIELDS = (INPUT, TARGET, NEGATIVES)


def dataset_url(path: str | Path) -> str:
    """``file://`` URL for a local path; URLs (hdfs://, s3://, file://) are passed through.

    Not ``Path.as_uri()``: it percent-encodes the ``=`` of ``ds=<ds>`` and petastorm does not decode.
    """
    text = str(path)
    return text if "://" in text else "file://" + str(Path(text).resolve())


def _petastorm_row_groups(url: str) -> list:
    """The row-group pieces in the order petastorm's reader indexes them (same calls as Reader)."""
    from petastorm.etl.dataset_metadata import load_row_groups
    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    filesystem, path = get_filesystem_and_path_or_paths(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        dataset = pq.ParquetDataset(path, filesystem=filesystem, validate_schema=False,
                                    metadata_nthreads=10)
    return load_row_groups(dataset)


def shard_row_counts(path: str | Path, shard_count: int) -> list[int]:
    """Rows each petastorm shard will read (footer row counts summed per ``index % shard_count``)."""
    pieces = _petastorm_row_groups(dataset_url(path))
    if len(pieces) < shard_count:
        raise ValueError(f"{path} has {len(pieces)} row groups, fewer than {shard_count} shards: "
                         "rebuild it with more row groups (sequences.num_train_workers)")
    footers: dict[str, pq.FileMetaData] = {}
    counts = [0] * shard_count
    for index, piece in enumerate(pieces):
        if piece.path not in footers:
            footers[piece.path] = pq.ParquetFile(piece.path).metadata
        counts[index % shard_count] += footers[piece.path].row_group(piece.row_group).num_rows
    return counts


def steps_per_epoch(path: str | Path, batch_size: int, shard_count: int) -> int:
    """Full batches every rank can produce: the smallest shard's rows // batch_size (at least 1)."""
    counts = shard_row_counts(path, shard_count)
    steps = min(counts) // batch_size
    if steps < 1:
        raise ValueError(f"smallest shard of {path} has {min(counts)} rows (shards: {counts}), less "
                         f"than one batch of {batch_size}: lower train.batch_size")
    log.info("shard rows %s -> %d steps of %d per epoch", counts, steps, batch_size)
    return steps


class ShardBatches:
    """Exactly ``steps`` shuffled batches per epoch from this rank's shard, as torch tensors.

    Row groups are read in a per-epoch seeded order (one reader thread by default keeps it
    deterministic) and rows are mixed in a seeded shuffling buffer, so epoch ``e`` sees the same
    batches whether or not the run was resumed.
    """

    def __init__(self, path: str | Path, batch_size: int, steps: int, rank: int, world_size: int,
                 seed: int, shuffle_buffer: int, reader_workers: int = 1):
        self.url = dataset_url(path)
        self.batch_size, self.steps = batch_size, steps
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle_buffer, self.reader_workers = seed, shuffle_buffer, reader_workers

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        from petastorm import make_batch_reader

        rng = np.random.default_rng([self.seed, epoch, self.rank])
        capacity = max(self.shuffle_buffer, self.batch_size)
        buffer: dict[str, np.ndarray] = {}
        emitted = 0
        reader = make_batch_reader(
            self.url, schema_fields=list(TRAIN_FIELDS), seed=self.seed * 1000 + epoch,
            shuffle_row_groups=True, num_epochs=1, reader_pool_type="thread",
            workers_count=self.reader_workers, cur_shard=self.rank, shard_count=self.world_size)
        with reader:
            for chunk in reader:
                for name in TRAIN_FIELDS:
                    column = np.asarray(getattr(chunk, name), dtype=np.int64)
                    buffer[name] = column if name not in buffer else np.concatenate([buffer[name], column])
                while len(buffer[INPUT]) >= capacity and emitted < self.steps:
                    yield self._take(buffer, rng)
                    emitted += 1
                if emitted == self.steps:
                    return
            while buffer and len(buffer[INPUT]) >= self.batch_size and emitted < self.steps:
                yield self._take(buffer, rng)
                emitted += 1
        if emitted < self.steps:
            raise RuntimeError(f"rank {self.rank} read only {emitted} of {self.steps} batches from "
                               f"{self.url}: did the dataset change during training?")

    def _take(self, buffer: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        n = len(buffer[INPUT])
        pick = rng.choice(n, size=self.batch_size, replace=False)
        keep = np.ones(n, dtype=bool)
        keep[pick] = False
        batch = {name: torch.from_numpy(buffer[name][pick]) for name in TRAIN_FIELDS}
        for name in TRAIN_FIELDS:
            buffer[name] = buffer[name][keep]
        return batch


def read_eval_split(path: str | Path, rank: int = 0, world_size: int = 1) -> dict:
    """This rank's rows (every ``world_size``-th, in user_id order) of a validation/test split:
    ``input`` LongTensor [n, L], ``target`` LongTensor [n], ``seen`` list of int arrays."""
    table = pq.read_table(str(path), columns=["user_id", INPUT, TARGET, SEEN]).sort_by("user_id")
    table = table.take(np.arange(rank, table.num_rows, world_size))
    inputs = table.column(INPUT).to_pylist()
    return {
        INPUT: torch.tensor(np.asarray(inputs, dtype=np.int64).reshape(len(inputs), -1)),
        TARGET: torch.tensor(table.column(TARGET).to_numpy().astype(np.int64)),
        SEEN: [np.asarray(s, dtype=np.int64) for s in table.column(SEEN).to_pylist()],
    }


def read_item_counts(path: str | Path, num_items: int) -> np.ndarray:
    """Counts indexed by item_idx (length ``num_items``; items absent from the table count 0)."""
    table = pq.read_table(str(path), columns=[ITEM_IDX, COUNT])
    counts = np.zeros(num_items, dtype=np.int64)
    idx = table.column(ITEM_IDX).to_numpy()
    if len(idx) and (idx.min() < 0 or idx.max() >= num_items):
        raise ValueError(f"{path}: item_idx outside [0, {num_items})")
    counts[idx] = table.column(COUNT).to_numpy()
    return counts


def read_transitions(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prev, next, count) LongTensors of the ``transitions`` dataset, sorted by (prev, next) so
    that every rank loads identical buffers."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found: the night was built before transitions were part "
                                "of the dataset; re-run build-sequences or set train.last_item_transitions=false")
    table = pq.read_table(str(path), columns=[PREV_IDX, NEXT_IDX, COUNT]).sort_by(
        [(PREV_IDX, "ascending"), (NEXT_IDX, "ascending")])
    return tuple(torch.from_numpy(table.column(c).to_numpy().astype(np.int64))
                 for c in (PREV_IDX, NEXT_IDX, COUNT))
