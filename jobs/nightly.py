"""Run every stage of the nightly pipeline for one night or a range of nights, in order."""
from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.build import build_night
from recsys_spark.config import Config
from recsys_spark.events import events_table, existing_nights, write_events
from recsys_spark.manifest import Manifest
from recsys_spark.runtime import init_job, job_parser, parse_ds
from recsys_spark.sequences import DataQualityError
from recsys_spark.session import get_spark
from recsys_spark.synthetic import generate_events

log = logging.getLogger("recsys.nightly")


def manifest_path(cfg: Config, ds: str) -> Path:
    return Path(cfg.storage.root).resolve() / "runs" / f"ds={ds}" / "manifest.json"


def ensure_events(spark: SparkSession, cfg: Config, ds: str) -> dict:
    """Make sure night ``ds`` has input: with the synthetic source, generate the missing nights of the
    history (first run) or just ``ds``; with the table source, fail if ``ds`` is missing."""
    end = dt.date.fromisoformat(ds)
    start = end - dt.timedelta(days=cfg.synthetic.days - 1)
    have = existing_nights(spark, cfg.storage.database, start.isoformat(), ds)
    if cfg.nightly.source == "table":
        if ds not in have:
            raise DataQualityError(f"no partition ds={ds} in {events_table(cfg.storage.database)}")
        return {"generated_nights": 0}
    wanted = [(start + dt.timedelta(days=i)).isoformat() for i in range(cfg.synthetic.days)]
    missing = [d for d in wanted if d not in have]
    if missing:
        first = dt.date.fromisoformat(missing[0])
        events = generate_events(spark, cfg.synthetic, first, end).where(F.col(S.DS).isin(missing))
        write_events(spark, cfg.storage.database, events, missing)
    return {"generated_nights": len(missing)}


def run_night(spark: SparkSession, cfg: Config, ds: str) -> Manifest:
    manifest = Manifest(ds=ds, config_hash=cfg.hash())
    try:
        with manifest.stage("events") as details:
            details.update(ensure_events(spark, cfg, ds))
        with manifest.stage("build_sequences") as details:
            details.update(build_night(spark, cfg, ds))
    finally:
        manifest.save(manifest_path(cfg, ds))
    return manifest


def _summary(cfg: Config, manifest: Manifest) -> str:
    lines = [f"night {manifest.ds}: " + ", ".join(f"{s.name} {s.status} ({s.seconds}s)" for s in manifest.stages)]
    quality = next((s.details for s in manifest.stages if s.name == "build_sequences"), {})
    if quality:
        lines.append(f"  {quality['users']} users, {quality['items']} items, "
                     f"{quality['training_examples']} training examples, "
                     f"{quality['rejected']} events rejected")
    lines.append(f"  tables: {cfg.storage.database}.* in {Path(cfg.spark.warehouse_dir or '.').resolve()}")
    lines.append(f"  manifest: {manifest_path(cfg, manifest.ds)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, help="the night to run (YYYY-MM-DD)")
    parser.add_argument("--start", type=parse_ds, help="first night of a backfill")
    parser.add_argument("--end", type=parse_ds, help="last night of a backfill (inclusive)")
    args = parser.parse_args(argv)
    if bool(args.ds) == bool(args.start or args.end) or bool(args.start) != bool(args.end):
        parser.error("give either --ds or both --start and --end")
    first, last = (args.ds, args.ds) if args.ds else (args.start, args.end)
    if last < first:
        parser.error(f"--end {last} is before --start {first}")
    cfg = init_job(args)
    spark = get_spark(cfg)
    night = first
    while night <= last:
        try:
            manifest = run_night(spark, cfg, night.isoformat())
        except DataQualityError as exc:
            log.error("night %s failed: %s (manifest: %s)", night, exc, manifest_path(cfg, night.isoformat()))
            return 3
        print(_summary(cfg, manifest), flush=True)
        night += dt.timedelta(days=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
