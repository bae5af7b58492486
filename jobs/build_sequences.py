"""Build a night's item vocabulary, user sequences, splits and training examples from recsys.events."""
from __future__ import annotations

import sys

from recsys_spark.build import build_night
from recsys_spark.lock import run_exclusive
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from recsys_spark.session import get_spark


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="night to build (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    return run_exclusive(cfg.storage.root, "build_sequences", args.ds.isoformat(), lambda: _build(cfg, args))


def _build(cfg, args) -> int:
    summary = build_night(get_spark(cfg), cfg, args.ds.isoformat())
    log.info("built %s: %d users, %d items, %d training examples in %.0fs", args.ds, summary["users"],
             summary["items"], summary["training_examples"], summary["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
