"""Print an item's published similar items (item ids and scores) for a night.

Reads the night's similar_items publish record and its Parquet files directly
(recsys_spark.published): no JVM, no metastore, about a second.
"""
from __future__ import annotations

import sys

from recsys_spark.published import SIMILAR_ITEMS, read_record, read_row
from recsys_spark.runtime import init_job, job_main, job_parser, parse_ds


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--item", required=True, help="item_id")
    parser.add_argument("--ds", type=parse_ds, help="night (default: the latest published)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    record = read_record(cfg.storage.root, f"{cfg.storage.database}.{SIMILAR_ITEMS}",
                         args.ds.isoformat() if args.ds else None)
    ds, row = record["ds"], read_row(record, "item_id", args.item)
    if row is None:
        print(f"no similar items for item {args.item!r} on {ds}")
        return 1
    print(f"item {row['item_id']}, night {ds}, model {row['model_version']}")
    for rec in row["similar"]:
        print(f"{rec['rank']:>4}  {rec['item_id']:<20} {rec['score']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
