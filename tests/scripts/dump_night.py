"""Print one night's published rows as JSON: ``recommendations`` and ``offline_metrics`` of night ``ds``,
read through the config's own metastore (Derby or PostgreSQL), sorted so that runs compare as wholes.

usage: dump_night.py DS --conf NAME [--set key=value ...]
Used by tests/cluster/test_standalone_night.py to compare the same night under two deployments.
"""
from __future__ import annotations

import argparse
import json

from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.config import load_config
from recsys_spark.evaluation import OFFLINE_METRICS
from recsys_spark.publish import recommendations_table
from recsys_spark.session import get_spark
from recsys_spark.tables import qualified


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ds")
    parser.add_argument("--conf", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(args.conf, args.overrides)
    spark = get_spark(cfg)
    db = cfg.storage.database
    recs = (spark.table(recommendations_table(db)).where(F.col(S.DS) == args.ds).orderBy(S.USER_ID).collect())
    metrics = (spark.table(qualified(db, OFFLINE_METRICS)).where(F.col(S.DS) == args.ds)
               .orderBy("model_version", "name", "protocol", "split", "metric", "k").collect())
    print(json.dumps({
        "recommendations": [[r.user_id, r.source, r.model_version, str(r.generated_at),
                             [[x["rank"], x["item_id"], float(x["score"])] for x in r.recs]] for r in recs],
        "offline_metrics": [[r.model_version, r.name, r.protocol, r.split, r.metric, r.k, float(r.value)]
                            for r in metrics],
    }))
    spark.stop()


if __name__ == "__main__":
    main()
