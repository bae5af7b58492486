"""Live refresh: fold new event files of the landing directory into users' lists (Structured Streaming).

Long-running (stops gracefully on SIGTERM) or, with --once, catch up on every file there and exit.
"""
from __future__ import annotations

import sys

from recsys_spark.live import run_stream
from recsys_spark.runtime import init_job, job_main, job_parser
from recsys_spark.session import get_spark


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--once", action="store_true",
                        help="process every file that has landed, then exit (availableNow; for cron)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    run_stream(get_spark(cfg), cfg, once=args.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
