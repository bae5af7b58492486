"""Score every user of a night with the production (or a given) model and publish recommendations."""
from __future__ import annotations

import sys

from recsys_spark.datasets import DatasetMetadata, dataset_dir
from recsys_spark.lock import run_exclusive
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from recsys_spark.serve import resolve_model, score_night
from recsys_spark.session import get_spark


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="the night to score (YYYY-MM-DD)")
    parser.add_argument("--model-version", help="registered model to use (default: production)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    return run_exclusive(cfg.storage.root, "score", args.ds.isoformat(), lambda: _score(cfg, args))


def _score(cfg, args) -> int:
    ds = args.ds.isoformat()
    # What the user named, checked before the JVM starts; score_night raises the same errors.
    resolve_model(cfg, args.model_version)
    DatasetMetadata.load(dataset_dir(cfg.storage.root, ds))
    result = score_night(get_spark(cfg), cfg, ds, args.model_version)
    log.info("published %d users for %s with %s (%s)", result["rows"], args.ds, result["model_version"],
             result["sources"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
