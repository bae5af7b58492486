"""The live-refresh checks that need a JVM of their own (embedded Derby admits one): run in a warehouse
that tests/test_live.py set up, write what they saw as JSON.

usage: live_driver.py verify  EVENTS.json OUT.json ARGS.json   the live rows vs the batch scorer
       live_driver.py rebase  EVENTS.json OUT.json ARGS.json   a new night published under a running stream

EVENTS.json holds every event the test wrote into the landing directory, with ``valid`` telling whether
the batch rules accept it. The reference for a user is computed here from those events, not from
anything the stream wrote: the night's ``user_state`` history plus the user's valid events after the
night's cut-off, in (ts, item_id, event_type) order, mapped through the night's vocabulary (unknown
items dropped), repeats collapsed, capped, then scored by the nightly batch scorer (NightScorer).
"""
from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from recsys_spark import schemas as S
from recsys_spark.build import item_index_version
from recsys_spark.config import load_config
from recsys_spark.emit import write_event_file
from recsys_spark.live import LIVE_UPDATES, RECOMMENDATIONS_LIVE, LiveStream, current_base, landing_dir
from recsys_spark.serve import night_scorer
from recsys_spark.session import get_spark
from recsys_spark.tables import qualified
from recsys_spark.user_state import read_user_state


def reference_histories(spark, cfg, base_ds: str, events: list[dict]) -> tuple[dict, dict]:
    """Per user with events after the night's cut-off: the reference history and the folded count."""
    cutoff = dt.datetime.combine(dt.date.fromisoformat(base_ds) + dt.timedelta(days=1), dt.time(),
                                 dt.timezone.utc)
    vocabulary = {r[S.ITEM_ID]: r[S.ITEM_IDX] for r in
                  item_index_version(spark, cfg.storage.database, base_ds).select(S.ITEM_ID, S.ITEM_IDX).collect()}
    key = lambda e: (e[S.USER_ID], e[S.ITEM_ID], e[S.EVENT_TYPE], dt.datetime.fromisoformat(e[S.TS]),  # noqa: E731
                     e.get(S.SESSION_ID))
    distinct = {key(e): e for e in events if e["valid"]}.values()  # exact duplicates: one event, as in the batch
    folded = [e for e in distinct if e[S.EVENT_TYPE] in cfg.sequences.event_types
              and dt.datetime.fromisoformat(e[S.TS]) >= cutoff]
    users = sorted({e[S.USER_ID] for e in folded})
    histories = {r[S.USER_ID]: list(r[S.ITEM_IDX]) for r in
                 read_user_state(spark, cfg.storage.database, base_ds).where(F.col(S.USER_ID).isin(users)).collect()}
    out = {}
    for user in users:
        history = histories.get(user, [])
        mine = sorted((e for e in folded if e[S.USER_ID] == user),
                      key=lambda e: (dt.datetime.fromisoformat(e[S.TS]), e[S.ITEM_ID], e[S.EVENT_TYPE]))
        for e in mine:
            idx = vocabulary.get(e[S.ITEM_ID])
            if idx is None or (cfg.sequences.collapse_repeats and history and history[-1] == idx):
                continue
            history.append(idx)
        out[user] = history[-cfg.sequences.max_history:]
    return out, {u: sum(1 for e in folded if e[S.USER_ID] == u) for u in users}


def reference_lists(spark, cfg, base_ds: str, model_version: str, histories: dict[str, list[int]]) -> dict:
    scorer = night_scorer(spark, cfg, base_ds, model_version)
    frame = spark.createDataFrame([(u, h) for u, h in histories.items()],
                                  f"{S.USER_ID} string, {S.ITEM_IDX} array<int>")
    return {r[S.USER_ID]: {"recs": [[x["rank"], x["item_id"], float(x["score"])] for x in r["recs"]],
                           "source": r["source"], "model_version": r["model_version"]}
            for r in scorer.score(frame).collect()}


def observed(spark, cfg, users: list[str]) -> dict:
    db = cfg.storage.database
    view = spark.table(qualified(db, RECOMMENDATIONS_LIVE))
    rows = view.where(F.col(S.USER_ID).isin(users)).collect()
    live = spark.table(qualified(db, LIVE_UPDATES))
    newest = {r[S.USER_ID]: r for r in live.where(F.col(S.USER_ID).isin(users)).orderBy("batch").collect()}
    stream_events = (spark.table(qualified(db, "events")).where(F.input_file_name().contains("/stream-b"))
                     .select(S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, F.date_format(S.TS, "yyyy-MM-dd'T'HH:mm:ss.SSS").alias(S.TS))
                     .collect())
    rejected = (spark.table(qualified(db, "events_rejected")).where(F.col(S.STAGE) == "stream")
                .groupBy(S.REASON).count().collect())
    return {
        "view_rows_per_user": {u: sum(1 for r in rows if r[S.USER_ID] == u) for u in users},
        "view_total_rows": view.count(), "view_distinct_users": view.select(S.USER_ID).distinct().count(),
        "lists": {r[S.USER_ID]: {"recs": [[x["rank"], x["item_id"], float(x["score"])] for x in r["recs"]],
                                 "source": r["source"], "model_version": r["model_version"],
                                 "events_folded": r["events_folded"], "ds": r[S.DS]} for r in rows},
        "histories": {u: list(r[S.ITEM_IDX]) for u, r in newest.items()},
        "stream_events": sorted([r[S.USER_ID], r[S.ITEM_ID], r[S.EVENT_TYPE], r[S.TS]] for r in stream_events),
        "rejected": {r[S.REASON]: r["count"] for r in rejected},
    }


def verify(spark, cfg, events: list[dict], sql: str | None = None) -> dict:
    base = current_base(cfg)
    histories, counts = reference_histories(spark, cfg, base.ds, events)
    query = [[r["rank"], r["item_id"], r["events_folded"]] for r in spark.sql(sql).collect()] if sql else None
    return {"base": [base.ds, base.model_version], "reference_histories": histories, "reference_counts": counts,
            "reference": reference_lists(spark, cfg, base.ds, base.model_version, histories),
            "readme_query": query, **observed(spark, cfg, sorted(histories))}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.5)


def rebase(spark, cfg, events: list[dict], args: dict) -> dict:
    """Stream running; night ``args['night']`` is built and published in this same process (one
    Derby JVM); then more events land. The stream must move to the new night at a micro-batch boundary."""
    from jobs.nightly import run_night

    directory = landing_dir(cfg)
    stream = LiveStream(spark, cfg).start()
    progress = Path(cfg.storage.root).resolve() / "stream" / "progress.jsonl"

    def batches() -> list[dict]:
        return [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []

    def write(chunk: list[dict], name: str) -> None:
        write_event_file(directory, [{k: v for k, v in e.items() if k != "valid"} for e in chunk], name)
        events.extend(chunk)

    seen = len(batches())
    write(args["before"], "rebase-before")
    wait_for(lambda: any(b["accepted"] for b in batches()[seen:]), 300, "the first events folded")
    old_base = current_base(cfg)
    run_night(spark, cfg, args["night"])
    new_base = current_base(cfg)
    seen = len(batches())
    write(args["after"], "rebase-after")
    wait_for(lambda: any(b["base_ds"] == args["night"] and b["accepted"] for b in batches()[seen:]), 300,
             "a micro-batch on the new night")
    stream.stop()
    return {"old_base": [old_base.ds, old_base.model_version], "new_base": [new_base.ds, new_base.model_version],
            "rebase_batches": [b for b in batches() if b["rebase"]], **verify(spark, cfg, events)}


def main() -> None:
    command, events_path, out_path, args_path = sys.argv[1:5]
    args = json.loads(Path(args_path).read_text())
    cfg = load_config(args["conf"], args["overrides"])
    spark = get_spark(cfg)
    events = json.loads(Path(events_path).read_text())
    result = verify(spark, cfg, events, args.get("sql")) if command == "verify" else rebase(spark, cfg, events, args)
    Path(out_path).write_text(json.dumps(result, default=str))
    Path(events_path).write_text(json.dumps(events))


if __name__ == "__main__":
    main()
