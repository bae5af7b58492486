"""Print a user's published recommendations (item ids and scores) for a night."""
from __future__ import annotations

import sys

from recsys_spark.runtime import init_job, job_parser, parse_ds
from recsys_spark.serve import lookup
from recsys_spark.session import get_spark


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--user", required=True, help="user_id")
    parser.add_argument("--ds", type=parse_ds, help="night (default: the latest published)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    spark = get_spark(cfg)
    ds, row = lookup(spark, cfg.storage.database, args.user, args.ds.isoformat() if args.ds else None)
    if row is None:
        print(f"no recommendations for user {args.user!r} on {ds}")
        return 1
    print(f"user {row.user_id}, night {ds}, source {row.source}, model {row.model_version}")
    for rec in row.recs:
        print(f"{rec['rank']:>4}  {rec['item_id']:<20} {rec['score']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
