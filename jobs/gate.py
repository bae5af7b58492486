"""Promote a candidate model to production if it passes the offline-metric gate for a night."""
from __future__ import annotations

import sys

from recsys_spark.gate import evaluate_gate
from recsys_spark.registry import models_root, production_version, require_version, set_production
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from recsys_spark.session import get_spark

REFUSED = 4


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="the night whose offline_metrics decide")
    parser.add_argument("--model-version", required=True, help="the candidate model version")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    root = models_root(cfg.storage.root)
    require_version(root, args.model_version)
    spark = get_spark(cfg)
    decision = evaluate_gate(spark, cfg, args.ds.isoformat(), args.model_version, production_version(root))
    if not decision.approved:
        log.error("candidate %s refused: %s; production stays %s", args.model_version, decision.reason,
                  production_version(root))
        return REFUSED
    set_production(root, args.model_version, reason=f"gate {args.ds}: {decision.reason} vs {decision.reference}")
    log.info("candidate %s is now production", args.model_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
