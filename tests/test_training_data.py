"""The Petastorm feed over Spark-written Parquet: tensors, shard sizes, equal steps per rank (the
Arrow feed and the two side by side: tests/test_training_feeds.py). Petastorm's tests are
``card_only``; the evaluation split reader is plain pyarrow and runs on both stacks."""
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from _training_data import NUM_NEG, WINDOW, build_dataset
from recsys_spark.datasets import TRAINING_EXAMPLES, VALIDATION
from training.data import read_eval_split
from training.petastorm_feed import PetastormFeed, dataset_url, shard_row_counts

SIZES = (150, 40, 110, 100)


@pytest.fixture(scope="module")
def uneven(spark, tmp_path_factory):
    return build_dataset(spark, tmp_path_factory.mktemp("data"), file_sizes=SIZES)


def _rows(batch):
    return {tuple(r) for r in np.concatenate([batch["input"], batch["target"]], axis=1).tolist()}


@pytest.mark.card_only
def test_petastorm_reads_spark_parquet_into_tensors(uneven):
    path = uneven / TRAINING_EXAMPLES
    feed = PetastormFeed(path, 32, 0, 1, seed=1, shuffle_buffer=64)
    steps = feed.steps
    assert steps == sum(SIZES) // 32
    batches = list(feed.epoch(0))
    assert len(batches) == steps
    for b in batches:
        assert b["input"].dtype == torch.int64 and b["input"].shape == (32, WINDOW)
        assert b["negatives"].shape == (32, NUM_NEG)
    table = pq.read_table(str(path)).to_pydict()
    written = {tuple(i + t) for i, t in zip(table["input"], table["target"])}
    seen = set().union(*(_rows(b) for b in batches))
    assert seen <= written and len(seen) > 0.8 * steps * 32  # rows arrive intact (up to duplicates)


@pytest.mark.card_only
def test_shard_row_counts_replay_petastorm_sharding(uneven):
    from petastorm import make_batch_reader

    path = uneven / TRAINING_EXAMPLES
    counts = shard_row_counts(path, 2)
    actual = []
    for shard in range(2):
        with make_batch_reader(dataset_url(path), schema_fields=["input"], cur_shard=shard,
                               shard_count=2, num_epochs=1, seed=3) as reader:
            actual.append(sum(len(b.input) for b in reader))
    assert counts == actual and sum(counts) == sum(SIZES)
    assert counts[0] != counts[1]  # the shards really are uneven
    assert PetastormFeed(path, 32, 0, 2, seed=3, shuffle_buffer=64).steps == min(counts) // 32


@pytest.mark.card_only
def test_every_rank_yields_the_same_number_of_batches_deterministically(uneven):
    path = uneven / TRAINING_EXAMPLES
    feeds = [PetastormFeed(path, 32, rank, 2, seed=5, shuffle_buffer=64) for rank in range(2)]
    steps = feeds[0].steps
    epoch0 = [list(f.epoch(0)) for f in feeds]
    assert [len(e) for e in epoch0] == [steps, steps]
    again = list(feeds[0].epoch(0))
    assert all(torch.equal(a["input"], b["input"]) for a, b in zip(epoch0[0], again))
    # twin: another epoch is shuffled differently, and the two ranks read disjoint data
    other = list(feeds[0].epoch(1))
    assert not all(torch.equal(a["input"], b["input"]) for a, b in zip(epoch0[0], other))
    users0 = set().union(*(_rows(b) for b in epoch0[0]))
    users1 = set().union(*(_rows(b) for b in epoch0[1]))
    assert len(users0 & users1) < 0.2 * len(users0)  # only chance collisions of identical rows


@pytest.mark.card_only
def test_too_few_rows_or_row_groups_fail_clearly(uneven):
    path = uneven / TRAINING_EXAMPLES
    with pytest.raises(ValueError, match="fewer than 5 shards"):
        shard_row_counts(path, 5)
    with pytest.raises(ValueError, match="lower train.batch_size"):
        PetastormFeed(path, 1000, 0, 2, seed=0, shuffle_buffer=64)


def test_eval_split_is_partitioned_across_ranks(uneven):
    full = read_eval_split(uneven / VALIDATION)
    parts = [read_eval_split(uneven / VALIDATION, r, 3) for r in range(3)]
    assert sum(len(p["target"]) for p in parts) == len(full["target"]) == 400
    assert torch.equal(torch.cat([p["target"] for p in parts]).sort().values, full["target"].sort().values)
    assert full["input"].shape == (400, WINDOW)
