"""Generate synthetic events into ``recsys.events`` for a range of nights (idempotent per night)."""
from __future__ import annotations

import datetime as dt
import sys

from recsys_spark.errors import UserError
from recsys_spark.events import write_events
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from recsys_spark.session import get_spark
from recsys_spark.synthetic import generate_events


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="last night to generate (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, help="number of nights ending at --ds (default synthetic.days)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    days = cfg.synthetic.days if args.days is None else args.days
    if days < 1:
        raise UserError(f"--days {days}: generate at least one night")
    start = args.ds - dt.timedelta(days=days - 1)
    spark = get_spark(cfg)
    ds_values = [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]
    events = generate_events(spark, cfg.synthetic, start, args.ds)
    n = write_events(spark, cfg.storage.database, events, ds_values)
    log.info("generated %d synthetic events for %s..%s", n, start, args.ds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
