"""``train.feed: petastorm``: Petastorm 0.12.1 over the Spark-written ``training_examples`` Parquet.

Petastorm (``Reader._partition_row_groups``) gives shard ``k`` the row groups whose index in
``load_row_groups(dataset)`` satisfies ``index % shard_count == k``; the seed only shuffles the
read order, never the membership. :func:`shard_row_counts` replays that assignment from the Parquet
footers so that every rank can derive the same step count (:mod:`training.feed`).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from training.feed import TRAIN_FIELDS, Feed, shard_sizes

# petastorm 0.12.1 drives pyarrow 14's deprecated legacy dataset API (the only one it supports) and
# logs every footer scan of a Spark-written (non-petastorm) store at INFO: keep both out of job logs.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")
logging.getLogger("petastorm").setLevel(logging.WARNING)


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
    footers: dict[str, pq.FileMetaData] = {}
    rows = []
    for piece in _petastorm_row_groups(dataset_url(path)):
        if piece.path not in footers:
            footers[piece.path] = pq.ParquetFile(piece.path).metadata
        rows.append(footers[piece.path].row_group(piece.row_group).num_rows)
    return shard_sizes(rows, shard_count, path)


class PetastormFeed(Feed):
    """A Petastorm batch reader per epoch over this rank's shard, its row groups in a seeded order
    (one reader thread by default keeps that order deterministic)."""

    def __init__(self, path: str | Path, batch_size: int, rank: int, world_size: int, seed: int,
                 shuffle_buffer: int, reader_workers: int = 1, length_buckets: int = 1):
        self.url = dataset_url(path)
        self.reader_workers = reader_workers
        super().__init__(path, shard_row_counts(path, world_size), batch_size, rank, world_size, seed,
                         shuffle_buffer, length_buckets)

    def _chunks(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        from petastorm import make_batch_reader

        reader = make_batch_reader(
            self.url, schema_fields=list(TRAIN_FIELDS), seed=self.seed * 1000 + epoch,
            shuffle_row_groups=True, num_epochs=1, reader_pool_type="thread",
            workers_count=self.reader_workers, cur_shard=self.rank, shard_count=self.world_size)
        with reader:
            for chunk in reader:
                yield {name: np.asarray(getattr(chunk, name), dtype=np.int64) for name in TRAIN_FIELDS}
