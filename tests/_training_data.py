"""Small per-night datasets in the ``recsys_spark.datasets`` layout, written with Spark, for the
training tests: users follow a planted transition next = (cur * 7 + 3) % (n - 1) + 1 with
probability ``p`` (otherwise a popularity-skewed random item), so a sequence model can learn what
most-popular cannot."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys_spark.datasets import (ITEM_COUNTS, TEST, TRAINING_EXAMPLES, TRANSITIONS, VALIDATION,
                                   DatasetMetadata, dataset_dir)
from recsys_spark.metrics import ranking_metrics, seen_mask, target_ranks
from training.data import read_eval_split, read_item_counts

DS = "2026-11-20"
NUM_ITEMS = 41  # item_idx 1..40, 0 = padding
WINDOW = 8
NUM_NEG = 8


def planted_next(item: int, num_items: int = NUM_ITEMS) -> int:
    return (item * 7 + 3) % (num_items - 1) + 1


def _pad(items, length):
    items = list(items)[-length:]
    return [0] * (length - len(items)) + items


def build_dataset(spark, root: Path, ds: str = DS, users: int = 400, seq_len: int = 12,
                  transition_p: float = 0.8, file_sizes: tuple[int, ...] | None = None,
                  seed: int = 0, shuffle_targets: bool = False) -> Path:
    """Write one night's dataset under ``root``; returns its directory.

    ``file_sizes`` splits training_examples into Parquet files (one row group each) of these row
    counts (file order is Spark's), to make uneven petastorm shards. ``shuffle_targets`` breaks
    the input->target relation of the training rows (the "bad data" twin of the learning test).
    """
    rng = np.random.default_rng(seed)
    items = np.arange(1, NUM_ITEMS)
    popularity = 1.0 / items ** 0.8
    popularity /= popularity.sum()
    sequences = []
    for _ in range(users):
        seq = [int(rng.choice(items, p=popularity))]
        while len(seq) < seq_len:
            seq.append(planted_next(seq[-1]) if rng.random() < transition_p
                       else int(rng.choice(items, p=popularity)))
        sequences.append(seq)

    counts = np.zeros(NUM_ITEMS, dtype=np.int64)
    for seq in sequences:
        np.add.at(counts, seq[:-2], 1)
    q = np.maximum(counts[1:], 1) ** 0.75
    q = q / q.sum()
    train_rows, val_rows, test_rows = [], [], []
    for u, seq in enumerate(sequences):
        history = seq[:-2]
        inputs, targets = _pad(history[:-1], WINDOW), _pad(history[1:], WINDOW)
        if shuffle_targets:
            targets = [0 if t == 0 else int(rng.choice(items)) for t in targets]
        negatives = []
        while len(negatives) < NUM_NEG:
            cand = int(rng.choice(items, p=q))
            if cand not in history:
                negatives.append(cand)
        train_rows.append((f"u{u:05d}", inputs, targets, negatives))
        val_rows.append((f"u{u:05d}", _pad(seq[:-2], WINDOW), seq[-2], sorted(set(seq[:-2]))))
        test_rows.append((f"u{u:05d}", _pad(seq[:-1], WINDOW), seq[-1], sorted(set(seq[:-1]))))

    out = dataset_dir(root, ds)
    train_schema = "user_id string, input array<int>, target array<int>, negatives array<int>"
    eval_schema = "user_id string, input array<int>, target int, seen array<int>"
    train_df = pd.DataFrame(train_rows, columns=["user_id", "input", "target", "negatives"])
    sizes = file_sizes or (len(train_rows) // 4,) * 3 + (len(train_rows) - 3 * (len(train_rows) // 4),)
    assert sum(sizes) == len(train_rows)
    bounds = np.cumsum((0,) + tuple(sizes))
    for i in range(len(sizes)):  # one write per file: a single Parquet file, one row group
        chunk = spark.createDataFrame(train_df.iloc[bounds[i]:bounds[i + 1]], train_schema)
        chunk.coalesce(1).write.mode("overwrite" if i == 0 else "append") \
            .parquet(str(out / TRAINING_EXAMPLES))
    for name, rows in ((VALIDATION, val_rows), (TEST, test_rows)):
        (spark.createDataFrame(pd.DataFrame(rows, columns=["user_id", "input", "target", "seen"]),
                               eval_schema).coalesce(1).write.mode("overwrite").parquet(str(out / name)))
    spark.createDataFrame(pd.DataFrame({"item_idx": np.arange(1, NUM_ITEMS, dtype=np.int32),
                                        "count": counts[1:]}),
                          "item_idx int, count long").coalesce(1).write.mode("overwrite") \
        .parquet(str(out / ITEM_COUNTS))
    # The transitions dataset is the training rows' (input, target) pairs, as the build job writes it.
    pairs = pd.Series([(a, b) for _, inputs, targets, _ in train_rows
                       for a, b in zip(inputs, targets) if b != 0]).value_counts().sort_index()
    spark.createDataFrame(pd.DataFrame({"prev_idx": [a for a, _ in pairs.index], "next_idx": [b for _, b in pairs.index],
                                        "count": pairs.to_numpy(np.int64)}),
                          "prev_idx int, next_idx int, count long").coalesce(1).write.mode("overwrite") \
        .parquet(str(out / TRANSITIONS))
    DatasetMetadata(ds=ds, num_items=NUM_ITEMS, window_length=WINDOW, num_negatives=NUM_NEG,
                    negative_alpha=0.75, split="leave_last_out", item_index_version="v-test",
                    num_training_examples=len(train_rows),
                    num_training_positions=int(sum(sum(t != 0 for t in r[2]) for r in train_rows)),
                    num_validation=len(val_rows), num_test=len(test_rows), row_groups=len(sizes)).save(out)
    return out


def train_config(cfg, root: Path, **train):
    """A copy of the session config writing under ``root`` with small, fast training settings."""
    out = copy.deepcopy(cfg)
    out.storage.root = str(root)
    settings = dict(embedding_dim=16, hidden_size=32, num_layers=1, dropout=0.1, batch_size=32,
                    epochs=2, lr=0.01, warmup_steps=5, patience=3, backend="single", num_proc=1,
                    shuffle_buffer=128, eval_batch_size=256, timeout_s=120, loss="softmax")
    settings.update(train)
    for key, value in settings.items():
        setattr(out.train, key, value)
    return out


def most_popular_ndcg(root: Path, ds: str = DS) -> float:
    """Validation NDCG@10 of ranking by training popularity: the bar a trained model must clear."""
    data = dataset_dir(root, ds)
    split = read_eval_split(data / VALIDATION)
    counts = torch.tensor(read_item_counts(data / ITEM_COUNTS, NUM_ITEMS), dtype=torch.float32)
    scores = counts.expand(len(split["target"]), -1)
    ranks = target_ranks(scores, split["target"], seen_mask(split["seen"], NUM_ITEMS))
    return ranking_metrics(ranks.numpy(), ks=(10,))["ndcg@10"]
