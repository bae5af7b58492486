"""Compute every item's similar items for a night with the production (or a given) model and publish
the night's similar_items partition."""
from __future__ import annotations

import sys

from recsys_spark.datasets import DatasetMetadata, dataset_dir
from recsys_spark.lock import run_exclusive
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from recsys_spark.serve import resolve_model
from recsys_spark.session import get_spark
from recsys_spark.similar import check_rule, similar_night

STAGE = "similar_items"


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="the night (YYYY-MM-DD)")
    parser.add_argument("--model-version", help="registered model to use (default: production)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    return run_exclusive(cfg.storage.root, STAGE, args.ds.isoformat(), lambda: _similar(cfg, args))


def _similar(cfg, args) -> int:
    ds = args.ds.isoformat()
    # What the user named, checked before the JVM starts; similar_night raises the same errors.
    check_rule(cfg.similar.rule)
    resolve_model(cfg, args.model_version)
    DatasetMetadata.load(dataset_dir(cfg.storage.root, ds))
    result = similar_night(get_spark(cfg), cfg, ds, args.model_version)
    log.info("published %d items for %s with %s (rule %s)", result["rows"], ds, result["model_version"],
             result["rule"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
