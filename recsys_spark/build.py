"""The build_sequences stage for one night: events window -> the four outputs of DESIGN.md.

Tables (``events_rejected``, ``item_index``, ``user_sequences``) are overwritten per partition and
the Parquet datasets are written to a staging directory and swapped in whole, so a re-run of a night
replaces exactly that night's outputs and readers never see half a dataset.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import shutil
import time
import uuid
from pathlib import Path
from typing import Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark import sequences as Q
from recsys_spark.config import Config
from recsys_spark.datasets import (ITEM_COUNTS, TEST, TRAINING_EXAMPLES, TRANSITIONS, VALIDATION,
                                   DatasetMetadata, dataset_dir)
from recsys_spark.events import events_table, write_rejected
from recsys_spark.tables import ensure_table, overwrite_partitions, qualified, read_ds_range

log = logging.getLogger(__name__)

ITEM_INDEX = "item_index"
USER_SEQUENCES = "user_sequences"
QUALITY_FILE = "quality.json"


def previous_item_index(spark: SparkSession, database: str, ds: str) -> Optional[DataFrame]:
    """The latest vocabulary version built before night ``ds`` (None on the first night)."""
    table = qualified(database, ITEM_INDEX)
    if not spark.catalog.tableExists(table):
        return None
    versions = spark.table(table).where(F.col(S.VERSION) < ds).agg(F.max(S.VERSION)).first()[0]
    return None if versions is None else spark.table(table).where(F.col(S.VERSION) == versions)


def item_index_version(spark: SparkSession, database: str, ds: str) -> DataFrame:
    """The vocabulary that night ``ds`` was built with."""
    return spark.table(qualified(database, ITEM_INDEX)).where(F.col(S.VERSION) == ds)


def _write_parquet_dataset(frames: dict[str, tuple[DataFrame, int]], target: Path) -> None:
    """Write each DataFrame as a Parquet directory into a staging copy of ``target``, then swap the
    whole directory in (rename), keeping the previous copy until the new one is in place."""
    staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
    for name, (frame, n_files) in frames.items():
        keys = _sort_keys(frame)
        (frame.repartition(n_files, keys[0]).sortWithinPartitions(*keys)
         .write.mode("overwrite").parquet(f"file://{staging / name}"))
    _swap_in(staging, target)


def training_file_count(rows: int, rows_per_file: int, workers: int) -> int:
    """Files (one row group each) for ``rows`` training examples: about ``rows_per_file`` each, and a
    multiple of ``workers``. Rank r reads row groups r, r + W, ...; with a count that is not a
    multiple, one shard is a file larger and every rank stops at the smallest shard's steps, so
    about a file's rows would go unread each epoch."""
    return workers * math.ceil(max(1, math.ceil(rows / rows_per_file)) / workers)


def _sort_keys(frame: DataFrame) -> list[str]:
    return [c for c in (S.USER_ID, "window_end", S.ITEM_IDX, S.PREV_IDX, S.NEXT_IDX) if c in frame.columns]


def _swap_in(staging: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _unreadable_input(exc: Exception) -> bool:
    """Spark failed to read an input file (corrupt, truncated, not Parquet)."""
    text = str(exc)
    return "FAILED_READ_FILE" in text or "is not a Parquet file" in text


def _percentiles(frame: DataFrame, column: str) -> dict[str, float]:
    qs = [0.5, 0.9, 0.99]
    values = frame.select(F.percentile_approx(column, qs, 1000), F.max(column), F.min(column)).first()
    if values[0] is None:
        return {}
    out = {f"p{int(q * 100)}": float(v) for q, v in zip(qs, values[0])}
    out.update(max=float(values[1]), min=float(values[2]))
    return out


def build_night(spark: SparkSession, cfg: Config, ds: str) -> dict:
    """Run every step of the stage for night ``ds``; returns the data-quality summary."""
    sc = cfg.sequences
    db = cfg.storage.database
    started = time.time()
    end = dt.date.fromisoformat(ds)
    start = (end - dt.timedelta(days=sc.lookback_days - 1)).isoformat()
    if not spark.catalog.tableExists(events_table(db)):
        raise Q.DataQualityError(f"no events for night {ds}: input table {events_table(db)} does not exist; "
                                 "generate or import events")
    window = read_ds_range(spark, events_table(db), start, ds)
    summary: dict = {"ds": ds, "window": [start, ds], "split": sc.split}

    try:
        if window.where(F.col(S.DS) == ds).isEmpty():
            raise Q.DataQualityError(
                f"no events for night {ds} in {events_table(db)}: the input partition is missing or "
                "empty; refusing to build from the earlier nights of the window alone (stale output)")
        valid, rejected = Q.validate_events(window.drop(S.DS), ds, list(S.EVENT_TYPES))
        valid = valid.cache()
        n_valid = valid.count()
        rejected_counts = write_rejected(spark, db, rejected, ds, stage="validate")
    except Exception as exc:
        if _unreadable_input(exc):
            raise Q.DataQualityError(
                f"cannot read the input events of {start}..{ds} in {events_table(db)}: a file is corrupt "
                f"or not Parquet ({str(exc).splitlines()[0][:300]}); repair or remove it and re-run "
                "(nothing was built)") from exc
        raise
    n_rejected = sum(rejected_counts.values())
    summary.update(rows_read=n_valid + n_rejected, rejected=n_rejected, rejected_by_reason=rejected_counts)
    log.info("window %s..%s: %d events read, %d rejected %s", start, ds, n_valid + n_rejected,
             n_rejected, rejected_counts or "")
    Q.check_rejected_share(n_valid + n_rejected, n_rejected, sc.max_rejected_share)

    clean = Q.deduplicate(valid).cache()
    n_dedup = clean.count()
    clean = Q.filter_event_types(clean, sc.event_types)
    if sc.collapse_repeats:
        clean = Q.collapse_repeats(clean)
    if sc.session_gap_minutes:
        clean = Q.sessionize(clean, sc.session_gap_minutes)
    n_before_support = clean.cache().count()
    clean, rounds = Q.iterate_min_support(clean, sc.min_item_support, sc.min_user_support,
                                          sc.max_support_rounds)
    n_clean = clean.count()
    valid.unpersist()
    summary.update(duplicates_removed=n_valid - n_dedup,
                   filtered_event_type_or_repeat=n_dedup - n_before_support,
                   filtered_min_support=n_before_support - n_clean, min_support_rounds=rounds,
                   events_kept=n_clean)
    if n_clean == 0:
        raise Q.DataQualityError(f"no events left after cleaning the window {start}..{ds} "
                                 f"(min_item_support={sc.min_item_support}, min_user_support={sc.min_user_support})")

    # Vocabulary: a new version for this night that keeps every earlier index.
    index_table = qualified(db, ITEM_INDEX)
    ensure_table(spark, index_table, S.ITEM_INDEX_SCHEMA, partition_by=(S.VERSION,))
    index = Q.update_item_index(previous_item_index(spark, db, ds),
                                Q.item_counts(clean, sc.event_weights), ds).localCheckpoint()
    overwrite_partitions(index, index_table)
    index = item_index_version(spark, db, ds).cache()
    num_items = index.agg(F.max(S.ITEM_IDX)).first()[0] + 1

    sequences_table = qualified(db, USER_SEQUENCES)
    ensure_table(spark, sequences_table, S.USER_SEQUENCES_SCHEMA)
    overwrite_partitions(Q.build_user_sequences(clean, index, ds, sc.max_history), sequences_table)
    sequences = spark.table(sequences_table).where(F.col(S.DS) == ds).cache()

    splits = Q.split_sequences(sequences, sc.split, ds, sc.temporal_cutoff_days, sc.validation_fraction,
                               sc.seed).cache()
    train_counts = (splits.select(F.explode("train").alias(S.ITEM_IDX))
                    .groupBy(S.ITEM_IDX).agg(F.count(F.lit(1)).alias(S.COUNT))).cache()
    cdf = Q.negative_cdf(train_counts.toPandas(), num_items, sc.negative_alpha)
    windows = Q.training_windows(splits, sc.window_length, sc.stride)
    examples = Q.add_negatives(windows, cdf, sc.num_negatives, sc.seed, sc.window_length)
    n_windows = windows.count()
    n_files = training_file_count(n_windows, sc.rows_per_row_group, sc.num_train_workers)
    validation = Q.eval_examples(splits, "val", sc.window_length)
    test = Q.eval_examples(splits, "test", sc.window_length)
    target_dir = dataset_dir(Path(cfg.storage.root).resolve(), ds)
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    _write_parquet_dataset({
        TRAINING_EXAMPLES: (examples.drop("window_end"), n_files),
        VALIDATION: (validation, sc.num_train_workers),
        TEST: (test, sc.num_train_workers),
        ITEM_COUNTS: (train_counts, 1),
        TRANSITIONS: (Q.transition_counts(splits), 1),
    }, target_dir)

    written = spark.read.parquet(f"file://{target_dir / TRAINING_EXAMPLES}")
    positions = written.select(F.sum(F.size(F.filter(S.TARGET, lambda t: t > 0)))).first()[0] or 0
    n_val = spark.read.parquet(f"file://{target_dir / VALIDATION}").count()
    n_test = spark.read.parquet(f"file://{target_dir / TEST}").count()
    summary.update(
        users=sequences.count(), items=index.where(F.col(S.COUNT) > 0).count(), vocabulary_size=num_items - 1,
        new_items=index.where(F.col(S.FIRST_SEEN_DS) == ds).count(),
        training_examples=n_windows, training_positions=int(positions), validation_queries=n_val,
        test_queries=n_test, parquet_files=n_files,
        sequence_length=_percentiles(sequences, S.N_EVENTS), seconds=round(time.time() - started, 1))
    DatasetMetadata(ds=ds, num_items=num_items, window_length=sc.window_length,
                    num_negatives=sc.num_negatives, negative_alpha=sc.negative_alpha, split=sc.split,
                    item_index_version=ds, num_training_examples=n_windows,
                    num_training_positions=int(positions), num_validation=n_val, num_test=n_test,
                    row_groups=n_files, quality=summary).save(target_dir)
    (target_dir / QUALITY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    cfg.save(target_dir / "config.yaml")
    for frame in (clean, index, sequences, splits, train_counts):
        frame.unpersist()
    log.info("data quality for %s: %s", ds, json.dumps(summary, sort_keys=True))
    return summary
