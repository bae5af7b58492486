"""Print a user's published recommendations (item ids and scores) for a night.

Reads the night's publish record and its Parquet files directly (recsys_spark.published): no JVM, no
metastore, about a second.
"""
from __future__ import annotations

import sys

from recsys_spark.published import RECOMMENDATIONS, read_record, read_user
from recsys_spark.runtime import init_job, job_main, job_parser, parse_ds


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--user", required=True, help="user_id")
    parser.add_argument("--ds", type=parse_ds, help="night (default: the latest published)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    record = read_record(cfg.storage.root, f"{cfg.storage.database}.{RECOMMENDATIONS}",
                         args.ds.isoformat() if args.ds else None)
    ds, row = record["ds"], read_user(record, args.user)
    if row is None:
        print(f"no recommendations for user {args.user!r} on {ds}")
        return 1
    print(f"user {row['user_id']}, night {ds}, source {row['source']}, model {row['model_version']}")
    for rec in row["recs"]:
        print(f"{rec['rank']:>4}  {rec['item_id']:<20} {rec['score']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
