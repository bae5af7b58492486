"""Check that a night's input partition ``recsys.events/ds=<ds>`` is there (the scheduler's sensor).

Exit 0: the partition exists with at least ``--min-rows`` rows. Exit 75 (EX_TEMPFAIL): not there yet,
ask again later. Anything else is a real error (bad config, unreachable metastore), which a sensor
must surface instead of waiting on it until its timeout.
"""
from __future__ import annotations

import sys

from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.events import events_table, existing_nights
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from recsys_spark.session import get_spark

NOT_READY = 75


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="the night whose input to check")
    parser.add_argument("--min-rows", type=int, default=1,
                        help="fewer rows than this counts as not there yet (default 1)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    ds = args.ds.isoformat()
    spark = get_spark(cfg)
    table = events_table(cfg.storage.database)
    if ds not in existing_nights(spark, cfg.storage.database, ds, ds):
        log.warning("input not ready: no partition ds=%s in %s", ds, table)
        return NOT_READY
    rows = spark.table(table).where(F.col(S.DS) == ds).count()
    if rows < args.min_rows:
        log.warning("input not ready: %s ds=%s has %d rows (< %d)", table, ds, rows, args.min_rows)
        return NOT_READY
    log.info("input ready: %s ds=%s has %d rows", table, ds, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
