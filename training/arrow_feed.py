"""``train.feed: arrow``: ``pyarrow.dataset`` over the Spark-written ``training_examples`` Parquet.

No Petastorm, so it runs on any pyarrow from 14 on (Petastorm needs the legacy dataset API that
pyarrow 15 removed). The dataset is discovered and every footer read once, when the feed is built;
an epoch then only reads its row groups, so nothing per epoch grows with the number of files.
Row groups are sharded exactly as Petastorm shards them (:mod:`training.feed`), and read in an
order seeded by (seed, epoch), the same on every rank.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from training.feed import TRAIN_FIELDS, Feed, shard_sizes


def row_group_fragments(path: str | Path) -> list[pads.ParquetFileFragment]:
    """One fragment per row group, files in path order and row groups in file order (the order
    Petastorm's ``load_row_groups`` indexes a Spark-written store in)."""
    dataset = pads.dataset(str(path), format="parquet")
    files = sorted(dataset.get_fragments(), key=lambda fragment: fragment.path)
    return [group for fragment in files for group in fragment.split_by_row_group()]


def list_matrix(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """A fixed-length list<int> column as an int64 array [rows, length]."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    lengths = pc.list_value_length(array)
    values = array.flatten()
    if array.null_count or values.null_count:
        raise ValueError(f"training_examples.{name} has nulls")
    width = pc.min_max(lengths)
    if width["min"].as_py() != width["max"].as_py():
        raise ValueError(f"training_examples.{name} lists differ in length "
                         f"({width['min'].as_py()}..{width['max'].as_py()})")
    return values.to_numpy().astype(np.int64).reshape(len(array), -1)


class ArrowFeed(Feed):
    """This rank's row groups, each read whole per epoch, as fragments found once at construction."""

    def __init__(self, path: str | Path, batch_size: int, rank: int, world_size: int, seed: int,
                 shuffle_buffer: int, length_buckets: int = 1):
        self.row_groups = row_group_fragments(path)
        rows = [group.row_groups[0].num_rows for group in self.row_groups]
        super().__init__(path, shard_sizes(rows, world_size, path), batch_size, rank, world_size, seed,
                         shuffle_buffer, length_buckets)

    def _chunks(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.row_groups))
        for index in order:
            if index % self.world_size != self.rank:
                continue
            # One thread: the ranks already hold every core (train.threads_per_proc each).
            table = self.row_groups[index].to_table(columns=list(TRAIN_FIELDS), use_threads=False)
            if table.num_rows:
                yield {name: list_matrix(table.column(name), name) for name in TRAIN_FIELDS}
