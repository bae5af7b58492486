"""Run every stage of the nightly pipeline for one night or a range of nights, in order."""
from __future__ import annotations

import datetime as dt
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.build import build_night
from recsys_spark.config import Config
from recsys_spark.errors import DataError
from recsys_spark.evaluation import BASELINE_VERSION, MODEL_NAME, run_evaluation
from recsys_spark.events import events_table, existing_nights, write_events
from recsys_spark.gate import evaluate_gate
from recsys_spark.lock import EXIT_LOCKED, RunLocked, exclusive_run
from recsys_spark.manifest import Manifest
from recsys_spark.publish import recommendations_table
from recsys_spark.registry import models_root, production_version, set_production
from recsys_spark.runtime import init_job, job_main, job_parser, parse_ds
from recsys_spark.sequences import DataQualityError
from recsys_spark.serve import NoModelError, score_night
from recsys_spark.session import get_spark
from recsys_spark.similar import ITEM_TO_ITEM, SIMILAR_CONTRACT, similar_night
from recsys_spark.synthetic import generate_events
from recsys_spark.tables import qualified
from training.distributed import check_stack, launch

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


@contextmanager
def _stage(manifest: Manifest, cfg: Config, name: str) -> Iterator[dict]:
    """A timed manifest stage under the same (stage, ds) lock as the stage's own job, so a manual
    `recsys score --ds D` cannot race the nightly run of D."""
    with exclusive_run(cfg.storage.root, name, manifest.ds), manifest.stage(name) as details:
        yield details


def run_night(spark: SparkSession, cfg: Config, ds: str) -> Manifest:
    """events -> build_sequences -> train -> evaluate (candidate and production) -> gate -> score ->
    similar_items.

    A refused candidate does not stop the night: production keeps serving and scores tonight's users,
    so recommendations stay fresh while the refusal is on record in the manifest."""
    manifest = Manifest(ds=ds, config_hash=cfg.hash(), model_hash=cfg.model_hash())
    registry = models_root(cfg.storage.root)
    try:
        with _stage(manifest, cfg, "events") as details:
            details.update(ensure_events(spark, cfg, ds))
        with _stage(manifest, cfg, "build_sequences") as details:
            details.update(build_night(spark, cfg, ds))
        with _stage(manifest, cfg, "train") as details:
            trained = launch(cfg, ds, spark)
            candidate = trained["model_version"]
            details.update(model_version=candidate, best_epoch=trained["best_epoch"],
                           epochs_run=trained["epochs_run"], validation=trained["validation"])
        production = production_version(registry)
        with _stage(manifest, cfg, "evaluate") as details:
            versions = [candidate] + ([production] if production and production != candidate else [])
            results, report = run_evaluation(spark, cfg, ds, versions)
            details.update(report=str(report), metrics={
                f"{_scorer_label(r)}/{r.protocol}/{r.split}":
                    {m: r.metrics.get(m) for m in ("hr@10", "ndcg@10", "mrr@20")} for r in results})
        with _stage(manifest, cfg, "gate") as details:
            decision = evaluate_gate(spark, cfg, ds, candidate, production)
            if decision.approved:
                set_production(registry, candidate, reason=f"nightly {ds}: {decision.reason}")
            details.update(approved=decision.approved, reason=decision.reason, reference=decision.reference,
                           metrics=decision.metrics, production=production_version(registry))
        if production_version(registry) is None:
            raise NoModelError(f"the first candidate {candidate} was refused by the gate ({decision.reason}) "
                               f"and there is no earlier production model to score with; see {decision.reference} "
                               f"in the evaluation report and retrain (e.g. more train.epochs)")
        with _stage(manifest, cfg, "score") as details:
            details.update(score_night(spark, cfg, ds))
        with _stage(manifest, cfg, "similar_items") as details:
            details.update(similar_night(spark, cfg, ds))
        manifest.outcome = {"model_version": production_version(registry), "candidate": candidate,
                            "gate_approved": decision.approved}
    finally:
        manifest.save(manifest_path(cfg, ds))
    return manifest


def _scorer_label(result) -> str:
    """A baseline's name, a model's version (``version:model_cosine`` for a compared similar rule)."""
    if result.model_version == BASELINE_VERSION:
        return result.name
    return result.model_version if result.name == MODEL_NAME else f"{result.model_version}:{result.name}"


def _summary(spark: SparkSession, cfg: Config, manifest: Manifest) -> str:
    """What a person wants to see after a night: stages, data, metrics vs baselines, a sample."""
    stages = {s.name: s.details for s in manifest.stages}
    lines = [f"night {manifest.ds}: " + ", ".join(f"{s.name} {s.status} ({s.seconds}s)" for s in manifest.stages)]
    quality = stages["build_sequences"]
    lines.append(f"  data: {quality['users']} users, {quality['items']} items, "
                 f"{quality['training_examples']} training examples, {quality['rejected']} events rejected")
    for protocol, title in (("leave_last_out", "leave-last-out test, full ranking, seen masked"),
                            (ITEM_TO_ITEM, "item-to-item: the test target ranked by the last item's list")):
        lines.append(f"  offline metrics ({title}):")
        for name, values in stages["evaluate"]["metrics"].items():
            if name.endswith(f"/{protocol}/test"):
                lines.append(f"    {name.split('/')[0]:<28} " + "  ".join(
                    f"{m} {v:.4f}" for m, v in values.items() if v is not None))
    gate = stages["gate"]
    lines.append(f"  gate: {'approved' if gate['approved'] else 'REFUSED'} vs {gate['reference']} "
                 f"({gate['reason']}); production = {gate['production']}")
    score = stages["score"]
    lines.append(f"  published {score['rows']} users {score['sources']} -> "
                 f"{recommendations_table(cfg.storage.database)} ds={manifest.ds}")
    sample = (spark.table(recommendations_table(cfg.storage.database))
              .where(F.col(S.DS) == manifest.ds).orderBy(S.USER_ID).limit(3).collect())
    for row in sample:
        lines.append(f"    {row.user_id}: " + ", ".join(r.item_id for r in row.recs[:8]) + " ...")
    similar = stages["similar_items"]
    lines.append(f"  published {similar['rows']} items (rule {similar['rule']}) -> "
                 f"{qualified(cfg.storage.database, SIMILAR_CONTRACT.table)} ds={manifest.ds}")
    for row in (spark.table(qualified(cfg.storage.database, SIMILAR_CONTRACT.table))
                .where(F.col(S.DS) == manifest.ds).orderBy(S.ITEM_ID).limit(2).collect()):
        lines.append(f"    {row.item_id}: " + ", ".join(r.item_id for r in row.similar[:8]) + " ...")
    lines.append(f"  warehouse: {Path(cfg.spark.warehouse_dir or '.').resolve()}; report: {stages['evaluate']['report']}")
    lines.append(f"  manifest: {manifest_path(cfg, manifest.ds)}")
    return "\n".join(lines)


@job_main
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
    check_stack(cfg.train)
    spark = get_spark(cfg)
    night = first
    while night <= last:
        try:
            with exclusive_run(cfg.storage.root, "nightly", night.isoformat()):
                manifest = run_night(spark, cfg, night.isoformat())
        except RunLocked as exc:
            log.error("%s", exc)
            return EXIT_LOCKED
        except DataError as exc:
            raise type(exc)(f"night {night} failed: {exc} "
                            f"(manifest: {manifest_path(cfg, night.isoformat())})") from exc
        print(_summary(spark, cfg, manifest), flush=True)
        night += dt.timedelta(days=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
