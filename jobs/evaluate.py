"""Offline evaluation of one night: baselines (and a trained model) under the configured protocols,
written to ``recsys.offline_metrics`` and a report under ``<storage.root>/reports/ds=<ds>/``."""
from __future__ import annotations

import sys

from recsys_spark.evaluation import run_evaluation
from recsys_spark.runtime import init_job, job_parser, log, parse_ds
from recsys_spark.session import get_spark


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="the night to evaluate (YYYY-MM-DD)")
    parser.add_argument("--model-version", help="registered model to evaluate (default: baselines only)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    spark = get_spark(cfg)
    results, report = run_evaluation(spark, cfg, args.ds.isoformat(), args.model_version)
    log.info("evaluated %d scorer/protocol/split combinations; report %s", len(results), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
