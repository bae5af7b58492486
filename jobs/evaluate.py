"""Offline evaluation of one night: baselines and trained models under the configured protocols,
written to ``recsys.offline_metrics`` and a report under ``<storage.root>/reports/ds=<ds>/``."""
from __future__ import annotations

import sys

from recsys_spark.evaluation import run_evaluation
from recsys_spark.lock import run_exclusive
from recsys_spark.registry import models_root, production_version, require_version
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from recsys_spark.session import get_spark


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="the night to evaluate (YYYY-MM-DD)")
    parser.add_argument("--model-version", action="append", default=[],
                        help="registered model to evaluate (repeatable; default: baselines only)")
    parser.add_argument("--with-production", action="store_true",
                        help="also evaluate the registry's production model, on the same queries")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    return run_exclusive(cfg.storage.root, "evaluate", args.ds.isoformat(), lambda: _evaluate(cfg, args))


def _evaluate(cfg, args) -> int:
    versions = list(dict.fromkeys(args.model_version))
    for version in versions:
        require_version(models_root(cfg.storage.root), version)
    if args.with_production:
        production = production_version(models_root(cfg.storage.root))
        if production is None:
            log.info("no production model registered yet")
        elif production not in versions:
            versions.append(production)
    spark = get_spark(cfg)
    results, report = run_evaluation(spark, cfg, args.ds.isoformat(), versions)
    log.info("evaluated %d scorer/protocol/split combinations; report %s", len(results), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
