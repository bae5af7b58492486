"""Write new events into the live refresh's landing directory: one user's clicks (--user, --items), or
synthetic traffic over the latest published night's users and items (--rate, --seconds)."""
from __future__ import annotations

import datetime as dt
import sys

from recsys_spark.emit import clicks, emit_traffic, night_population, write_event_file
from recsys_spark.errors import UserError
from recsys_spark.live import landing_dir
from recsys_spark.published import RECOMMENDATIONS, read_record
from recsys_spark.runtime import init_job, job_main, job_parser, log


def _timestamp(text: str) -> dt.datetime:
    stamp = dt.datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--user", help="the user who clicks (with --items)")
    parser.add_argument("--items", help="comma-separated item_ids the user views, in order")
    parser.add_argument("--ts", type=_timestamp, help="event time of the first click (default: now, UTC)")
    parser.add_argument("--rate", type=float, help="synthetic traffic: events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="synthetic traffic: how long")
    parser.add_argument("--files-per-second", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = init_job(args)
    directory = landing_dir(cfg)
    if args.user and args.items:
        start = args.ts or dt.datetime.now(dt.timezone.utc)
        path = write_event_file(directory, clicks(args.user, args.items.split(","), start),
                                f"clicks-{args.user}-{int(start.timestamp() * 1000)}")
        log.info("wrote %d events of user %s to %s", len(args.items.split(",")), args.user, path)
        return 0
    if args.rate:
        record = read_record(cfg.storage.root, f"{cfg.storage.database}.{RECOMMENDATIONS}")
        users, items, weights = night_population(record["location"])
        n = emit_traffic(directory, users, items, weights, args.rate, args.seconds, args.files_per_second,
                         args.seed)
        log.info("wrote %d events over %.0f s into %s", n, args.seconds, directory)
        return 0
    raise UserError("say what to emit: --user U --items A,B,C, or --rate R [--seconds S]")


if __name__ == "__main__":
    sys.exit(main())
