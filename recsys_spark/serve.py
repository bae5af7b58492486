"""The score stage for one night (model -> staged -> checked -> published)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.errors import DataError
from recsys_spark.build import USER_SEQUENCES, item_index_version
from recsys_spark.config import Config
from recsys_spark.datasets import DatasetMetadata, dataset_dir
from recsys_spark.publish import stage_and_publish
from recsys_spark.scoring import (GENERATED_AT, ModelPayload, ScoringSpec, id_lookup, popularity_list,
                                  score_users, scoring_inputs)
from recsys_spark.sequences import day_end
from recsys_spark.tables import qualified

log = logging.getLogger(__name__)


class NoModelError(DataError):
    """No model version to score with (none given and no production model in the registry)."""


def resolve_model(cfg: Config, model_version: Optional[str]) -> tuple[str, Path]:
    from recsys_spark.registry import load_registry, models_root
    registry = load_registry(models_root(cfg.storage.root))
    version = model_version or registry["production"]
    if version is None:
        raise NoModelError("no production model in the registry: train one and pass the gate, "
                           "or give --model-version")
    entry = registry["versions"].get(version)
    if entry is None:
        raise NoModelError(f"model version {version!r} is not registered in {models_root(cfg.storage.root)}")
    return version, Path(entry.get("artifact") or models_root(cfg.storage.root) / version)


def score_night(spark: SparkSession, cfg: Config, ds: str, model_version: Optional[str] = None) -> dict:
    """Score every user of night ``ds`` and publish the ``ds`` partition of ``recommendations``."""
    sc = cfg.score
    db = cfg.storage.database
    version, artifact = resolve_model(cfg, model_version)
    window = DatasetMetadata.load(dataset_dir(cfg.storage.root, ds)).window_length
    sequences = spark.table(qualified(db, USER_SEQUENCES)).where(F.col(S.DS) == ds)
    users = scoring_inputs(sequences, window).cache()
    index_df = item_index_version(spark, db, ds)
    index = index_df.select(S.ITEM_ID, S.ITEM_IDX, S.COUNT).toPandas()
    blocked = set(index.loc[index[S.ITEM_ID].isin(sc.blocklist), S.ITEM_IDX].tolist())
    popular, popular_scores = popularity_list(index, blocked, sc.k + cfg.sequences.max_history)
    spec = ScoringSpec(k=sc.k, mask_seen=sc.mask_seen, min_history=sc.min_history,
                       batch_size=sc.batch_size,
                       threads=int(spark.conf.get("spark.task.cpus", "1")))
    scored = score_users(users.repartition(sc.partitions, S.USER_ID), ModelPayload.from_artifact(version, artifact),
                         id_lookup(index), popular, popular_scores,
                         np.array(sorted(blocked), dtype=np.int64), spec)
    # generated_at is the night's logical time, not the wall clock: a re-run reproduces the partition.
    recommendations = scored.withColumn(GENERATED_AT, F.lit(day_end(ds))).withColumn(S.DS, F.lit(ds))
    vocabulary = index_df.where(~F.col(S.ITEM_ID).isin(sc.blocklist)) if sc.blocklist else index_df
    result = stage_and_publish(spark, db, recommendations, users.select(S.USER_ID, S.SEEN), vocabulary,
                               ds, sc.k, sc.mask_seen, sc.row_count_band, sc.partitions,
                               storage_root=cfg.storage.root, model_version=version)
    users.unpersist()
    return {"model_version": version, **result}

