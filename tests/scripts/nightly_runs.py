"""Run ``jobs.nightly.main`` once per argument list, in one process (one JVM, one Derby metastore under
the working directory), then dump what the metastore says was published to ``published.json``.

usage: nightly_runs.py '<json: [[argv...], ...]>'
Used by tests/test_nightly_e2e.py: separate processes keep each warehouse's embedded metastore to
itself and leave the test session's own SparkSession alone.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from jobs.nightly import main
from recsys_spark import schemas as S
from recsys_spark.config import load_config
from recsys_spark.publish import partition_location, recommendations_table
from recsys_spark.session import get_spark
from recsys_spark.similar import SIMILAR_CONTRACT
from recsys_spark.tables import qualified


def dump(argv: list[str]) -> dict:
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    cfg = load_config(argv[argv.index("--conf") + 1], overrides)
    spark = get_spark(cfg)  # the session the runs used (still active)
    table = recommendations_table(cfg.storage.database)
    rows = spark.table(table).orderBy(S.DS, S.USER_ID).collect()
    nights = sorted({r[S.DS] for r in rows})
    similar_table = qualified(cfg.storage.database, SIMILAR_CONTRACT.table)
    similar = spark.table(similar_table).orderBy(S.DS, S.ITEM_ID).collect()
    return {
        "locations": {ds: partition_location(spark, table, ds) for ds in nights},
        "similar_locations": {ds: partition_location(spark, similar_table, ds) for ds in nights},
        "similar": [{"ds": r[S.DS], "item_id": r[S.ITEM_ID], "model_version": r["model_version"],
                     "similar": [[x["rank"], x["item_id"], float(x["score"])] for x in r["similar"]]}
                    for r in similar],
        "rows": [{"ds": r[S.DS], "user_id": r[S.USER_ID], "source": r["source"],
                  "model_version": r["model_version"],
                  "recs": [[x["rank"], x["item_id"], float(x["score"])] for x in r["recs"]]} for r in rows],
    }


if __name__ == "__main__":
    runs = json.loads(sys.argv[1])
    for argv in runs:
        code = main(argv)
        if code:
            sys.exit(code)
    Path("published.json").write_text(json.dumps(dump(runs[-1])))
