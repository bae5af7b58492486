"""Point production back at an earlier model version (default: the previous production model)."""
from __future__ import annotations

import sys

from recsys_spark.errors import UserError
from recsys_spark.registry import models_root, previous_production, production_version, set_production
from recsys_spark.runtime import init_job, job_main, job_parser


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--to", dest="version", help="model version to restore (default: the previous one)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    root = models_root(cfg.storage.root)
    current = production_version(root)
    target = args.version or previous_production(root)
    if target is None:
        raise UserError(f"no earlier production model to roll back to (current: {current})")
    set_production(root, target, reason=f"rollback from {current}")
    print(f"production: {current} -> {target}; the next score and similar-items runs use {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
