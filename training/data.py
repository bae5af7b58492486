"""What the trainer reads: the training feed that ``train.feed`` names, and plain pyarrow readers
for the small evaluation splits, item counts and transitions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from recsys_spark.config import TrainConfig
from recsys_spark.schemas import COUNT, INPUT, ITEM_IDX, NEXT_IDX, PREV_IDX, SEEN, TARGET
from training.arrow_feed import ArrowFeed
from training.feed import Feed
from training.petastorm_feed import PetastormFeed


def make_feed(tc: TrainConfig, path: str | Path, rank: int, world_size: int) -> Feed:
    """This rank's feed of ``training_examples`` at ``path``, as ``train.feed`` chooses."""
    if tc.feed == "petastorm":
        return PetastormFeed(path, tc.batch_size, rank, world_size, tc.seed, tc.shuffle_buffer,
                             tc.reader_workers, tc.length_buckets)
    if tc.feed == "arrow":
        return ArrowFeed(path, tc.batch_size, rank, world_size, tc.seed, tc.shuffle_buffer, tc.length_buckets)
    raise ValueError(f"train.feed must be petastorm or arrow, got {tc.feed!r}")


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
