"""The score stage for one night (model -> staged -> checked -> published)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import schemas as S
from recsys_spark.errors import DataError
from recsys_spark.build import USER_SEQUENCES, item_index_version
from recsys_spark.config import Config
from recsys_spark.datasets import DatasetMetadata, dataset_dir
from recsys_spark.user_state import write_user_state
from recsys_spark.publish import stage_and_publish
from recsys_spark.scoring import (GENERATED_AT, ModelPayload, ScoringSpec, Shared, broadcast_scoring, id_lookup,
                                  popularity_list, score_users, scoring_inputs)
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


@dataclass(frozen=True)
class NightScorer:
    """What the batch scorer of night ``ds`` uses besides the users: the model, the night's vocabulary,
    fallback list and blocklist. The nightly score stage and the live refresh (:mod:`recsys_spark.live`)
    both score through :meth:`score`, so a live list is what the batch would publish for that history."""
    ds: str
    version: str
    window_length: int
    shared: Shared
    spec: ScoringSpec
    partitions: int

    def score(self, sequences: DataFrame, carry: tuple[T.StructField, ...] = (),
              partitions: Optional[int] = None) -> DataFrame:
        """(user_id, item_idx history, *carry) -> (user_id, recs, source, model_version, *carry)."""
        users = scoring_inputs(sequences, self.window_length, tuple(f.name for f in carry))
        return score_users(users.repartition(partitions or self.partitions, S.USER_ID), self.shared, self.spec, carry)

    def release(self) -> None:
        """Free the broadcast model and arrays (a live refresh moving to a new night's scorer)."""
        self.shared.destroy()


def night_scorer(spark: SparkSession, cfg: Config, ds: str, model_version: Optional[str] = None) -> NightScorer:
    sc = cfg.score
    version, artifact = resolve_model(cfg, model_version)
    window = DatasetMetadata.load(dataset_dir(cfg.storage.root, ds)).window_length
    index = item_index_version(spark, cfg.storage.database, ds).select(S.ITEM_ID, S.ITEM_IDX, S.COUNT).toPandas()
    blocked = set(index.loc[index[S.ITEM_ID].isin(sc.blocklist), S.ITEM_IDX].tolist())
    popular, popular_scores = popularity_list(index, blocked, sc.k + cfg.sequences.max_history)
    spec = ScoringSpec(k=sc.k, mask_seen=sc.mask_seen, min_history=sc.min_history,
                       batch_size=sc.batch_size,
                       threads=int(spark.conf.get("spark.task.cpus", "1")))
    shared = broadcast_scoring(spark.sparkContext, ModelPayload.from_artifact(version, artifact), id_lookup(index),
                               popular, popular_scores, np.array(sorted(blocked), dtype=np.int64))
    return NightScorer(ds, version, window, shared, spec, sc.partitions)


def score_night(spark: SparkSession, cfg: Config, ds: str, model_version: Optional[str] = None) -> dict:
    """Score every user of night ``ds``, write the night's ``user_state`` (what the live refresh starts
    from) and publish the ``ds`` partition of ``recommendations``."""
    sc = cfg.score
    db = cfg.storage.database
    scorer = night_scorer(spark, cfg, ds, model_version)
    sequences = spark.table(qualified(db, USER_SEQUENCES)).where(F.col(S.DS) == ds).cache()
    users = scoring_inputs(sequences, scorer.window_length).select(S.USER_ID, S.SEEN)
    # generated_at is the night's logical time, not the wall clock: a re-run reproduces the partition.
    recommendations = (scorer.score(sequences).withColumn(GENERATED_AT, F.lit(day_end(ds)))
                       .withColumn(S.DS, F.lit(ds)))
    write_user_state(spark, db, sequences, scorer.version)
    index_df = item_index_version(spark, db, ds)
    vocabulary = index_df.where(~F.col(S.ITEM_ID).isin(sc.blocklist)) if sc.blocklist else index_df
    result = stage_and_publish(spark, db, recommendations, users, vocabulary,
                               ds, sc.k, sc.mask_seen, sc.row_count_band, sc.partitions,
                               storage_root=cfg.storage.root, model_version=scorer.version)
    sequences.unpersist()
    scorer.release()
    return {"model_version": scorer.version, **result}
