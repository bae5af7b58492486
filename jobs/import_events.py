"""Import a public dataset file into ``recsys.events``; malformed rows go to ``events_rejected``."""
from __future__ import annotations

import sys

from recsys_spark import schemas as S
from recsys_spark.events import write_events, write_rejected
from recsys_spark.errors import UserError
from recsys_spark.importers import FORMATS, TABLE_FORMATS, ColumnMap, read_events, require_path
from recsys_spark.runtime import init_job, job_main, job_parser, log
from recsys_spark.sequences import DataQualityError
from recsys_spark.session import get_spark


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--path", required=True, help="input file or directory")
    parser.add_argument("--columns", metavar="user=COL,item=COL,time=COL[,event=COL][,session=COL]",
                        help="csv/parquet: the columns holding each event field")
    parser.add_argument("--time-format", default="epoch_s",
                        help="csv/parquet time column: epoch_s, epoch_ms or a Spark datetime pattern "
                             "such as 'yyyy-MM-dd HH:mm:ss' (default: epoch_s)")
    parser.add_argument("--rejected-ds", help="ds partition for quarantined rows (default: last event night)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    require_path(args.path)  # a local typo fails before the JVM starts
    columns = ColumnMap.parse(args.columns, args.time_format) if args.columns else None
    if (columns is None) != (args.format not in TABLE_FORMATS):
        raise UserError(f"--columns is for the csv and parquet formats only, and they need it "
                        f"(format {args.format})")
    spark = get_spark(cfg)
    events, _ = read_events(spark, args.path, args.format, rejected_ds="", columns=columns)
    events = events.cache()
    ds_values = sorted(r[S.DS] for r in events.select(S.DS).distinct().collect())
    if not ds_values:
        raise DataQualityError(f"no valid events in {args.path} (format {args.format}); "
                               "check the format and the file")
    rejected_ds = args.rejected_ds or ds_values[-1]
    _, rejected = read_events(spark, args.path, args.format, rejected_ds=rejected_ds, columns=columns)
    n = write_events(spark, cfg.storage.database, events, ds_values)
    counts = write_rejected(spark, cfg.storage.database, rejected, rejected_ds, stage="import")
    log.info("imported %d events (%d nights %s..%s) from %s; rejected %s",
             n, len(ds_values), ds_values[0], ds_values[-1], args.path, counts or "none")
    events.unpersist()
    return 0


if __name__ == "__main__":
    sys.exit(main())
