"""Print a user's published recommendations (item ids and scores) for a night, or with --live the
list the live refresh updated since.

Reads the night's publish record and its Parquet files directly (recsys_spark.published): no JVM, no
metastore, about a second.
"""
from __future__ import annotations

import sys

from recsys_spark.published import RECOMMENDATIONS, read_live_record, read_live_user, read_record, read_user
from recsys_spark.runtime import init_job, job_main, job_parser, parse_ds


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--user", required=True, help="user_id")
    parser.add_argument("--ds", type=parse_ds, help="night (default: the latest published)")
    parser.add_argument("--live", action="store_true",
                        help="the list the live refresh (recsys stream) updated since the night, if any")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    record = read_record(cfg.storage.root, f"{cfg.storage.database}.{RECOMMENDATIONS}",
                         args.ds.isoformat() if args.ds else None)
    if args.live:
        live = read_live_record(cfg.storage.root)
        row = read_live_user(live, args.user) if live and live["ds"] == record["ds"] else None
        if row is not None:
            print(f"user {row['user_id']}, live since night {live['ds']} ({row['events_folded']} events folded, "
                  f"updated {row['updated_at']:%Y-%m-%d %H:%M:%S} UTC), source {row['source']}, "
                  f"model {row['model_version']}")
            _print_recs(row)
            return 0
        print(f"no live update for user {args.user!r} since night {record['ds']}: the nightly list")
    ds, row = record["ds"], read_user(record, args.user)
    if row is None:
        print(f"no recommendations for user {args.user!r} on {ds}")
        return 1
    print(f"user {row['user_id']}, night {ds}, source {row['source']}, model {row['model_version']}")
    _print_recs(row)
    return 0


def _print_recs(row: dict) -> None:
    for rec in row["recs"]:
        print(f"{rec['rank']:>4}  {rec['item_id']:<20} {rec['score']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
