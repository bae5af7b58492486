"""``train.feed``: the Arrow feed reads the same shards as the Petastorm feed, each example once per
epoch, with the same step count on every rank; the trainer gets either one from ``make_feed``. The
comparisons with Petastorm are ``card_only``; the Arrow feed's own tests run on both stacks."""
import json
import shutil
import typing
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from _stack import CARD
from _training_data import DS, NUM_NEG, WINDOW, build_dataset, most_popular_ndcg, train_config
from recsys_spark.config import ConfigError, TrainConfig, load_config
from recsys_spark.datasets import TRAINING_EXAMPLES, dataset_dir
from recsys_spark.schemas import INPUT, NEGATIVES, TARGET
from training import arrow_feed
from training.arrow_feed import ArrowFeed, list_matrix
from training.data import make_feed
from training.feed import TRAIN_FIELDS, Feed
from training.petastorm_feed import PetastormFeed, shard_row_counts
from training.trainer import train

BATCH = 32
EVEN = (64, 64, 64, 64)  # 2 shards of 128 rows = 4 full batches each: nothing sits out an epoch
UNEVEN = (150, 40, 110, 100)


@pytest.fixture(scope="module")
def even(spark, tmp_path_factory):
    return build_dataset(spark, tmp_path_factory.mktemp("even"), users=sum(EVEN), file_sizes=EVEN) \
        / TRAINING_EXAMPLES


@pytest.fixture(scope="module")
def uneven_root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("uneven")
    build_dataset(spark, root, file_sizes=UNEVEN)
    return root


@pytest.fixture(scope="module")
def uneven(uneven_root):
    return dataset_dir(uneven_root, DS) / TRAINING_EXAMPLES


def _examples(rows: dict) -> Counter:
    """A multiset of examples (input, target, negatives) from column arrays or tensors."""
    joined = np.concatenate([np.asarray(rows[name]) for name in TRAIN_FIELDS], axis=1)
    return Counter(map(tuple, joined.tolist()))


def _epoch_examples(feed, epoch: int) -> Counter:
    return sum((_examples(batch) for batch in feed.epoch(epoch)), Counter())


def _written(path) -> Counter:
    table = pq.read_table(str(path))
    return _examples({name: list_matrix(table.column(name), name) for name in TRAIN_FIELDS})


def _feeds(kind, path, world_size, seed=5):
    if kind == "petastorm":
        return [PetastormFeed(path, BATCH, rank, world_size, seed, shuffle_buffer=64)
                for rank in range(world_size)]
    return [ArrowFeed(path, BATCH, rank, world_size, seed, shuffle_buffer=64) for rank in range(world_size)]


def _footer_shard_rows(path, world_size: int) -> list[int]:
    """Rows per shard as Petastorm assigns row groups (index % world_size over the files in path order,
    row groups in file order), replayed from the Parquet footers alone."""
    footers = [pq.ParquetFile(file).metadata for file in sorted(path.glob("*.parquet"))]
    rows = [meta.row_group(i).num_rows for meta in footers for i in range(meta.num_row_groups)]
    return [sum(rows[shard::world_size]) for shard in range(world_size)]


def _assert_same_examples(left: list[Counter], right: list[Counter]) -> None:
    for rank, (a, b) in enumerate(zip(left, right)):
        assert a == b, f"rank {rank}: {sum((a - b).values())} examples only left, {sum((b - a).values())} only right"


@pytest.mark.card_only
def test_both_feeds_yield_the_same_examples_per_rank_every_epoch(even):
    petastorm, arrow = _feeds("petastorm", even, 2), _feeds("arrow", even, 2)
    assert [f.steps for f in arrow] == [f.steps for f in petastorm] == [4, 4]
    written = _written(even)
    for epoch in (0, 1):
        expected = [_epoch_examples(f, epoch) for f in petastorm]
        actual = [_epoch_examples(f, epoch) for f in arrow]
        _assert_same_examples(expected, actual)
        assert sum(actual, Counter()) == written  # every example exactly once across the ranks


@pytest.mark.card_only
def test_twin_the_comparison_fails_when_one_example_differs(even, tmp_path):
    bad = tmp_path / TRAINING_EXAMPLES
    shutil.copytree(even, bad)
    victim = sorted(bad.glob("*.parquet"))[0]
    table = pq.read_table(victim)
    targets = table.column(TARGET).to_pylist()
    targets[0] = [t if t == 0 else (t % 40) + 1 for t in targets[0]]  # one example's targets change
    table = table.set_column(table.schema.get_field_index(TARGET), TARGET,
                             pa.array(targets, table.schema.field(TARGET).type))
    pq.write_table(table, victim)
    expected = [_epoch_examples(f, 0) for f in _feeds("petastorm", even, 2)]
    actual = [_epoch_examples(f, 0) for f in _feeds("arrow", bad, 2)]
    with pytest.raises(AssertionError, match="1 examples only left, 1 only right"):
        _assert_same_examples(expected, actual)


def test_uneven_row_groups_give_every_rank_the_same_step_count(uneven):
    for world_size in (2, 3):
        counts = _footer_shard_rows(uneven, world_size)
        if CARD:  # Petastorm's own replay agrees (where Petastorm runs)
            assert shard_row_counts(uneven, world_size) == counts
        feeds = _feeds("arrow", uneven, world_size)
        assert feeds[0].shard_rows == counts  # the same shards as petastorm's
        # twin: the shards differ, so per-shard step counts would differ and hang allreduce
        assert len({c // BATCH for c in counts}) > 1
        steps = min(counts) // BATCH
        assert [len(list(f.epoch(0))) for f in feeds] == [steps] * world_size
        for batch in feeds[0].epoch(1):
            assert batch[INPUT].dtype == torch.int64 and batch[INPUT].shape == (BATCH, WINDOW)
            assert batch[NEGATIVES].shape == (BATCH, NUM_NEG)


def test_each_example_at_most_once_per_epoch_and_each_epoch_reshuffled(uneven):
    feeds = _feeds("arrow", uneven, 2)
    written = _written(uneven)
    shards = [sum((_examples(c) for c in f._chunks(0)), Counter()) for f in feeds]
    assert shards[0] + shards[1] == written  # the shards split the dataset
    epoch0 = [_epoch_examples(f, 0) for f in feeds]
    assert all(e <= s for e, s in zip(epoch0, shards))  # a rank yields only its shard, each row once
    first, again = list(feeds[0].epoch(0)), list(feeds[0].epoch(0))
    assert all(torch.equal(a[INPUT], b[INPUT]) for a, b in zip(first, again))  # deterministic
    # twin: another epoch reads another order (and leaves other rows of the larger shard out)
    other = list(feeds[0].epoch(1))
    assert not all(torch.equal(a[INPUT], b[INPUT]) for a, b in zip(first, other))


def test_epochs_reuse_the_dataset_discovered_once(uneven, monkeypatch):
    feed = ArrowFeed(uneven, BATCH, 0, 2, seed=1, shuffle_buffer=64)

    def no_discovery(*args, **kwargs):
        raise AssertionError("the dataset was discovered again")

    monkeypatch.setattr(arrow_feed.pads, "dataset", no_discovery)
    assert [len(list(feed.epoch(e))) for e in range(3)] == [feed.steps] * 3
    with pytest.raises(AssertionError, match="discovered again"):  # twin: building a feed discovers
        ArrowFeed(uneven, BATCH, 0, 2, seed=1, shuffle_buffer=64)


def test_too_few_row_groups_or_rows_fail_clearly(uneven):
    with pytest.raises(ValueError, match="fewer than 5 shards"):
        ArrowFeed(uneven, BATCH, 0, 5, seed=0, shuffle_buffer=64)
    with pytest.raises(ValueError, match="lower train.batch_size"):
        ArrowFeed(uneven, 1000, 0, 2, seed=0, shuffle_buffer=64)


def test_ragged_or_null_lists_are_refused():
    assert list_matrix(pa.chunked_array([pa.array([[1, 2], [3, 4]])]), INPUT).tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="differ in length"):
        list_matrix(pa.chunked_array([pa.array([[1, 2], [3]])]), INPUT)
    with pytest.raises(ValueError, match="nulls"):
        list_matrix(pa.chunked_array([pa.array([[1, None], [3, 4]])]), INPUT)


def test_make_feed_follows_the_config_and_bad_names_fail_at_config_time(uneven):
    tc = TrainConfig(batch_size=BATCH)
    assert typing.get_args(typing.get_type_hints(TrainConfig)["feed"]) == ("petastorm", "arrow")
    if CARD:  # building a Petastorm feed reads the footers through Petastorm
        assert isinstance(make_feed(tc, uneven, 0, 2), PetastormFeed)
    assert isinstance(make_feed(TrainConfig(batch_size=BATCH, feed="arrow"), uneven, 0, 2), ArrowFeed)
    assert load_config("local", ["train.feed=arrow"]).train.feed == "arrow"
    with pytest.raises(ConfigError, match="train.feed: expected one of petastorm, arrow, got 'foo'"):
        load_config("local", ["train.feed=foo"])
    with pytest.raises(ConfigError, match="train.backend: expected one of horovod, ddp, single, got 'mpi'"):
        load_config("local", ["train.backend=mpi"])


class _ArrayFeed(Feed):
    """Feed's shared shuffling buffer and length buckets over rows held in memory (one rank)."""

    def __init__(self, rows: dict, length_buckets: int = 1):
        self.rows = rows
        super().__init__("memory", [len(rows[INPUT])], BATCH, 0, 1, seed=3, shuffle_buffer=64,
                         length_buckets=length_buckets)

    def _chunks(self, epoch):
        for start in range(0, len(self.rows[INPUT]), 50):
            yield {name: self.rows[name][start:start + 50] for name in TRAIN_FIELDS}


def _ragged_rows(n: int = 320) -> dict:
    """Left-padded windows of 1..WINDOW items, each row unique (its index in the negatives)."""
    rng = np.random.default_rng(0)
    inputs, targets = np.zeros((n, WINDOW), np.int64), np.zeros((n, WINDOW), np.int64)
    for row, length in enumerate(rng.integers(1, WINDOW + 1, n)):
        inputs[row, WINDOW - length:] = rng.integers(1, 41, length)
        targets[row, WINDOW - length:] = rng.integers(1, 41, length)
    negatives = np.column_stack([np.arange(n), rng.integers(1, 41, (n, NUM_NEG - 1))])
    return {INPUT: inputs, TARGET: targets, NEGATIVES: negatives}


def _mean_length_spread(feed: Feed, epoch: int) -> float:
    lengths = [batch[INPUT].count_nonzero(1) for batch in feed.epoch(epoch)]
    return float(np.mean([int(b.max() - b.min()) for b in lengths]))


def test_length_buckets_batch_similar_lengths_and_keep_every_example_once():
    rows = _ragged_rows()
    plain, bucketed = _ArrayFeed(rows), _ArrayFeed(rows, length_buckets=4)
    assert plain.steps == bucketed.steps == 10
    for epoch in (0, 1):
        assert _epoch_examples(bucketed, epoch) == _epoch_examples(plain, epoch) == _examples(rows)
        assert _mean_length_spread(bucketed, epoch) <= 3.0
        # twin: plain random batches mix every length
        assert _mean_length_spread(plain, epoch) >= WINDOW - 2
    first, again = list(bucketed.epoch(0)), list(bucketed.epoch(0))
    assert all(torch.equal(a[NEGATIVES], b[NEGATIVES]) for a, b in zip(first, again))  # deterministic
    with pytest.raises(ValueError, match="length_buckets must be at least 1"):
        _ArrayFeed(rows, length_buckets=0)


def test_make_feed_passes_the_length_buckets(uneven):
    assert make_feed(TrainConfig(batch_size=BATCH, feed="arrow", length_buckets=4), uneven, 0, 2).length_buckets == 4
    assert load_config("local", ["train.length_buckets=8"]).train.length_buckets == 8


@pytest.mark.card_only
def test_the_trainer_learns_the_same_from_either_feed(cfg, uneven_root):
    """The trainer only sees the Feed interface: both feeds train to within 0.05 validation
    NDCG@10 of each other (same shards, another row order), far above most-popular."""
    ndcg = {}
    for kind in ("petastorm", "arrow"):
        result = train(train_config(cfg, uneven_root, epochs=3, lr=0.02, feed=kind), DS,
                       model_version=f"feed-{kind}")
        ndcg[kind] = result["validation"]["ndcg@10"]
        metrics = json.loads((uneven_root / "models" / f"feed-{kind}" / "metrics.json").read_text())
        assert metrics["feed"] == kind
    assert abs(ndcg["arrow"] - ndcg["petastorm"]) <= 0.05, ndcg
    # twin: the tolerance is far tighter than the gap to a model that learnt nothing sequential
    assert min(ndcg.values()) - most_popular_ndcg(uneven_root) > 0.15, ndcg
