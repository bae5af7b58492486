"""The real build_sequences job on real Spark tables and Parquet, over two consecutive nights."""
import json

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs import build_sequences, generate_events
from recsys_spark import schemas as S
from recsys_spark.build import training_file_count
from recsys_spark.datasets import TRAINING_EXAMPLES, DatasetMetadata, dataset_dir
from recsys_spark.events import events_table, rejected_table

pytestmark = pytest.mark.integration

NIGHT1, NIGHT2 = "2026-11-19", "2026-11-20"


@pytest.fixture(scope="module")
def job_conf(cfg, test_root):
    """A config file for the jobs: the test session's warehouse plus small synthetic data."""
    cfg = type(cfg)(**{k: v for k, v in cfg.__dict__.items()})
    cfg.synthetic.events_per_day = 2500
    cfg.synthetic.n_users = 300
    cfg.synthetic.n_items = 250
    cfg.synthetic.new_items_per_day = 10
    cfg.sequences.window_length = 10
    cfg.sequences.stride = 5
    cfg.sequences.num_negatives = 5
    cfg.sequences.rows_per_row_group = 200
    path = test_root / "build_job.yaml"
    cfg.save(path)
    return str(path), cfg


@pytest.fixture(scope="module")
def built(spark, job_conf):
    path, cfg = job_conf
    assert generate_events.main(["--conf", path, "--ds", NIGHT2, "--days", "4"]) == 0
    assert build_sequences.main(["--conf", path, "--ds", NIGHT1]) == 0
    assert build_sequences.main(["--conf", path, "--ds", NIGHT2]) == 0
    return cfg


def test_all_four_outputs_exist(spark, built):
    db = built.storage.database
    seqs = spark.table(f"{db}.user_sequences").where(F.col(S.DS) == NIGHT2)
    assert seqs.count() > 100
    assert seqs.where(F.size(S.ITEM_IDX) != F.size(S.TS)).count() == 0
    assert seqs.where(F.size(S.ITEM_IDX) > built.sequences.max_history).count() == 0
    index = spark.table(f"{db}.item_index").where(F.col(S.VERSION) == NIGHT2)
    n_items = index.count()
    assert index.agg(F.min(S.ITEM_IDX), F.max(S.ITEM_IDX)).first() == (1, n_items)
    assert spark.catalog.tableExists(rejected_table(db))
    directory = dataset_dir(built.storage.root, NIGHT2)
    meta = DatasetMetadata.load(directory)
    assert meta.num_items == n_items + 1 and meta.window_length == 10
    examples = pq.ParquetDataset(str(directory / TRAINING_EXAMPLES)).read().to_pandas()
    assert len(examples) == meta.num_training_examples
    assert examples[S.INPUT].map(len).eq(10).all() and examples[S.NEGATIVES].map(len).eq(5).all()
    files = list((directory / TRAINING_EXAMPLES).glob("*.parquet"))
    assert len(files) % built.sequences.num_train_workers == 0  # every training worker gets an equal share
    quality = json.loads((directory / "quality.json").read_text())
    assert quality["rows_read"] == quality["events_kept"] + quality["rejected"] + quality["duplicates_removed"] \
        + quality["filtered_event_type_or_repeat"] + quality["filtered_min_support"]


def test_item_keeps_its_index_on_the_next_night(spark, built):
    db = built.storage.database
    index = spark.table(f"{db}.item_index")
    n1 = index.where(F.col(S.VERSION) == NIGHT1).select(S.ITEM_ID, S.ITEM_IDX)
    n2 = index.where(F.col(S.VERSION) == NIGHT2).select(S.ITEM_ID, S.ITEM_IDX)
    assert_df_equality(n2.join(n1.select(S.ITEM_ID), S.ITEM_ID, "left_semi"), n1, ignore_row_order=True)
    new_items = index.where((F.col(S.VERSION) == NIGHT2) & (F.col(S.FIRST_SEEN_DS) == NIGHT2))
    assert new_items.count() > 0  # the synthetic catalogue grows every night
    assert new_items.agg(F.min(S.ITEM_IDX)).first()[0] > n1.count()


def test_rerunning_a_night_gives_the_same_outputs(spark, built, job_conf):
    path, cfg = job_conf
    db = cfg.storage.database
    directory = dataset_dir(cfg.storage.root, NIGHT2)
    before = spark.read.parquet(f"file://{directory / TRAINING_EXAMPLES}").collect()
    seq_before = spark.table(f"{db}.user_sequences").where(F.col(S.DS) == NIGHT2).collect()
    night1 = spark.table(f"{db}.user_sequences").where(F.col(S.DS) == NIGHT1).count()
    assert build_sequences.main(["--conf", path, "--ds", NIGHT2]) == 0
    after = spark.read.parquet(f"file://{directory / TRAINING_EXAMPLES}")
    assert sorted(map(tuple, before)) == sorted(map(tuple, after.collect()))
    assert sorted(map(tuple, seq_before)) == sorted(
        map(tuple, spark.table(f"{db}.user_sequences").where(F.col(S.DS) == NIGHT2).collect()))
    assert spark.table(f"{db}.user_sequences").where(F.col(S.DS) == NIGHT1).count() == night1
    assert not list(directory.parent.glob(".*staging*"))  # no staging leftovers


def test_too_many_rejected_events_fail_the_night(spark, built, job_conf, capsys):
    import datetime as dt
    path, cfg = job_conf
    db = cfg.storage.database
    night = "2026-11-21"
    noon = dt.datetime(2026, 11, 21, 12)
    good = [(f"u{u}", f"i{i}", "view", noon + dt.timedelta(minutes=i), None, night)
            for u in range(5) for i in range(20)]
    bad = [("u1", None, "view", noon, None, night)] * 100
    spark.createDataFrame(good + bad, S.EVENTS_TABLE_SCHEMA).write.insertInto(events_table(db), overwrite=True)
    one_night = ["--conf", path, "--ds", night, "--set", "sequences.lookback_days=1"]
    assert build_sequences.main(one_night) == 3
    # the user's one line (recsys_spark.runtime.job_main), on stderr
    assert "100 of 200 events (50.0%) were rejected, above the configured maximum" in capsys.readouterr().err
    rejected = spark.table(rejected_table(db)).where(F.col(S.DS) == night)
    assert [tuple(r) for r in rejected.groupBy(S.REASON).count().collect()] == [("missing_item_id", 100)]
    # the twin: a tolerant threshold builds the night from the 100 valid events
    assert build_sequences.main(one_night + ["--set", "sequences.max_rejected_share=0.6"]) == 0
    assert spark.table(f"{db}.user_sequences").where(F.col(S.DS) == night).count() == 5


@pytest.mark.parametrize("rows, per_file, workers, files", [
    (13087, 2000, 2, 8),   # 7 files would give the ranks 4 and 3 files: a file's rows unread per epoch
    (100, 2000, 2, 2),     # fewer rows than one file: still one file per worker
    (6000, 2000, 3, 3),
    (6001, 2000, 3, 6),
])
def test_training_files_are_a_multiple_of_the_workers(rows, per_file, workers, files):
    assert training_file_count(rows, per_file, workers) == files
