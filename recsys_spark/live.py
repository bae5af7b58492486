"""Live refresh: new events fold into each touched user's history and update their list within seconds,
on Spark Structured Streaming (README, "Live refresh").

A file stream over ``stream.landing_dir`` (JSON lines or Parquet, schema given) hands each micro-batch
``N`` to :class:`LiveRefresh`, which

1. validates the rows with the batch rules; rejects go to ``events_rejected`` (``ds`` = the processing
   day, ``stage = stream``) with their reason;
2. appends the accepted events to ``recsys.events`` (their ``ds`` partitions) as files named after
   ``N``: a replayed micro-batch rewrites its own files, so every event lands exactly once and the next
   nightly trains on it;
3. takes the *base*: the latest published night of ``recommendations`` and the model that scored it.
   Events before that night's cut-off are in its ``user_state`` already and are not folded again;
4. starts each touched user from the newest committed live row of this base (micro-batches before
   ``N``) or else the night's ``user_state``, folds the events in event-time order with the batch's
   tie-break (ts, item_id, event_type) and scores the new history with the night's batch scorer;
5. writes the rows (list and state) to a directory of their own and commits them with one metastore
   ``ADD PARTITION`` of ``live_updates``: a reader sees all of a micro-batch or none of it, and a
   replay of a committed micro-batch changes nothing.

The first micro-batch on a new base (a night published while the stream runs) re-folds every event
after the new night's cut-off from ``recsys.events`` onto the new ``user_state``: none lost, none twice.
The view ``recommendations_live`` shows the newest row per user of the current base.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pyspark.sql import DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from recsys_spark import schemas as S
from recsys_spark import sequences as Q
from recsys_spark.build import item_index_version
from recsys_spark.config import Config
from recsys_spark.events import EVENTS, EVENTS_REJECTED
from recsys_spark.publish import table_location
from recsys_spark.published import RECOMMENDATIONS, read_live_record, read_record, write_live_record
from recsys_spark.scoring import MODEL_VERSION, RECS, SCORED_SCHEMA, SOURCE
from recsys_spark.serve import NightScorer, night_scorer
from recsys_spark.tables import ensure_table, qualified
from recsys_spark.user_state import LAST_TS, read_user_state

log = logging.getLogger(__name__)

LIVE_UPDATES = "live_updates"
RECOMMENDATIONS_LIVE = "recommendations_live"
BATCH = "batch"
EVENTS_FOLDED = "events_folded"
UPDATED_AT = "updated_at"
STREAM_STAGE = "stream"
MALFORMED = "malformed_record"
CORRUPT = "_corrupt_record"
BATCHES_DIR = "_batches"

EVENTS = "events"
EVENT_FIELDS = (S.TS, S.ITEM_ID, S.EVENT_TYPE, S.SESSION_ID, S.ITEM_IDX)
"""A folded event, in the order that sorts events like the batch's sequences (then the rest)."""
EVENTS_TYPE = T.ArrayType(T.StructType([T.StructField(S.TS, T.TimestampType()),
                                        T.StructField(S.ITEM_ID, T.StringType()),
                                        T.StructField(S.EVENT_TYPE, T.StringType()),
                                        T.StructField(S.SESSION_ID, T.StringType()),
                                        T.StructField(S.ITEM_IDX, T.IntegerType())]))
STATE_COLUMNS = (S.USER_ID, S.ITEM_IDX, EVENTS, EVENTS_FOLDED, LAST_TS)
LIVE_SCHEMA = T.StructType(SCORED_SCHEMA.fields + [
    T.StructField(S.ITEM_IDX, T.ArrayType(T.IntegerType(), False), False),
    T.StructField(EVENTS, EVENTS_TYPE, False),
    T.StructField(EVENTS_FOLDED, T.IntegerType(), False),
    T.StructField(LAST_TS, T.TimestampType(), True),
    T.StructField(UPDATED_AT, T.TimestampType(), False),
    T.StructField(S.DS, T.StringType(), False),
    T.StructField(BATCH, T.LongType(), False),
])
"""``live_updates``: per micro-batch, the new list and state of each user it refreshed (the history
scored, and the events after the night's cut-off that built it); partitioned by (``ds`` = the base
night, ``batch``)."""


def landing_dir(cfg: Config) -> Path:
    return Path(cfg.stream.landing_dir or Path(cfg.storage.root) / "landing").resolve()


def stream_dir(cfg: Config) -> Path:
    return Path(cfg.storage.root).resolve() / "stream"


# --- the source and validation -------------------------------------------------------------------

def raw_event_schema(fmt: str) -> T.StructType:
    """Parquet files carry the events types; JSON is read as text, so that a bad value is quarantined
    with its line instead of turning into a null, and a line that is no JSON object lands in
    ``_corrupt_record``."""
    if fmt == "parquet":
        return S.EVENTS_SCHEMA
    return T.StructType([T.StructField(f.name, T.StringType(), True) for f in S.EVENTS_SCHEMA.fields]
                        + [T.StructField(CORRUPT, T.StringType(), True)])


def landing_source(spark: SparkSession, directory: Path, fmt: str, max_files: int) -> DataFrame:
    directory.mkdir(parents=True, exist_ok=True)
    reader = (spark.readStream.schema(raw_event_schema(fmt)).option("maxFilesPerTrigger", max_files))
    if fmt == "parquet":
        return reader.parquet(str(directory))
    return (reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
            .json(str(directory)))


def validate_stream_rows(raw: DataFrame, today: str, event_types: list[str]) -> tuple[DataFrame, DataFrame]:
    """The batch's validation (:func:`recsys_spark.sequences.validate_events`, "future" meaning after
    the end of the processing day) plus ``malformed_record`` for lines that are no JSON object."""
    if CORRUPT not in raw.columns:
        return Q.validate_events(raw, today, event_types)
    malformed = raw.where(F.col(CORRUPT).isNotNull()).select(
        F.col(CORRUPT).alias(S.RAW), F.lit(MALFORMED).alias(S.REASON))
    valid, rejected = Q.validate_events(raw.where(F.col(CORRUPT).isNull()).drop(CORRUPT), today, event_types)
    return valid, rejected.unionByName(malformed)


# --- folding -------------------------------------------------------------------------------------

def fold_events(prior: DataFrame, events: DataFrame, max_history: int, collapse_repeats: bool) -> DataFrame:
    """New states of the users of ``events``.

    ``prior``: (user_id, item_idx = the night's history, last_ts = its last event's time, events = the
    events after the night's cut-off folded so far), nulls for a user without one; ``events``: new
    events (user_id, item_id, event_type, ts, session_id, item_idx), ``item_idx`` null when the night's
    vocabulary lacks the item (the model cannot take it; the next night's vocabulary will).

    The folded events are kept and re-ordered with each new one, so a late event takes its place in
    event time across micro-batches too, as it would in the next night's sequences: exact duplicates
    dropped, ordered by (ts, item_id, event_type), appended to the night's history, an item equal to
    the one before it not appended again (``collapse_repeats``), the last ``max_history`` kept."""
    new = events.groupBy(S.USER_ID).agg(F.collect_list(F.struct(*EVENT_FIELDS)).alias("_new"))
    folded = F.array_sort(F.array_distinct(F.concat(F.coalesce(F.col(EVENTS), F.array().cast(EVENTS_TYPE)),
                                                    F.col("_new").cast(EVENTS_TYPE))))
    history = F.coalesce(F.col(S.ITEM_IDX), F.array().cast("array<int>"))
    joined = new.join(prior, S.USER_ID, "left").select(
        S.USER_ID, folded.alias(EVENTS), F.size(history).alias("_n_old"), history.alias("_history"), LAST_TS)
    known = F.filter(F.transform(EVENTS, lambda e: e[S.ITEM_IDX]), lambda idx: idx.isNotNull())
    joined = joined.withColumn("_all", F.concat("_history", known))
    items = F.col("_all")
    if collapse_repeats:
        items = F.filter(items, lambda idx, i: F.when((i < F.col("_n_old")) | (i == 0), True)
                         .otherwise(idx != F.get(F.col("_all"), i - 1)))
    joined = joined.withColumn("_all", items)
    capped = F.slice("_all", F.greatest(F.size("_all") - max_history + 1, F.lit(1)), max_history)
    return joined.select(S.USER_ID, capped.cast("array<int>").alias(S.ITEM_IDX), EVENTS,
                         F.size(EVENTS).alias(EVENTS_FOLDED),
                         F.greatest(F.col(LAST_TS), F.element_at(EVENTS, -1)[S.TS]).alias(LAST_TS))


def newest_rows(live: DataFrame) -> DataFrame:
    """The newest row per user (highest micro-batch)."""
    newest = Window.partitionBy(S.USER_ID).orderBy(F.desc(BATCH))
    return live.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") == 1).drop("_n")


def live_view_sql(database: str, base_ds: str) -> str:
    """``recommendations_live``: the newest row per user of base night ``base_ds``."""
    return (f"CREATE OR REPLACE VIEW {qualified(database, RECOMMENDATIONS_LIVE)} AS "
            f"SELECT {S.USER_ID}, {RECS}, {SOURCE}, {MODEL_VERSION}, {EVENTS_FOLDED}, {UPDATED_AT}, {S.DS} "
            f"FROM (SELECT *, row_number() OVER (PARTITION BY {S.USER_ID} ORDER BY {BATCH} DESC) AS _newest "
            f"FROM {qualified(database, LIVE_UPDATES)} WHERE {S.DS} = '{base_ds}') WHERE _newest = 1")


# --- files ---------------------------------------------------------------------------------------

def append_files(spark: SparkSession, table: str, rows: DataFrame, partition_by: tuple[str, ...],
                 name: str, location: Optional[str] = None) -> list[dict[str, str]]:
    """Append ``rows`` to a partitioned table as one file per partition called ``<name>.parquet``: a
    re-run under the same name replaces its own files instead of adding copies. Returns the partitions
    written (their new files are listed by the next read after a ``refreshTable``). Through Hadoop's
    FileSystem, so the table may live on HDFS or an object store. ``location``: the table's, if known."""
    location = location or table_location(spark, table)
    jvm = spark._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path
    staging = hadoop_path(f"{location}/_staging/{name}")
    fs = staging.getFileSystem(spark._jsc.hadoopConfiguration())
    staging = fs.makeQualified(staging)
    fs.delete(staging, True)  # what a killed attempt left there (e.g. Spark's .spark-staging-* dirs)
    rows.coalesce(1).write.mode("overwrite").partitionBy(*partition_by).parquet(staging.toString())
    partitions: list[dict[str, str]] = []
    files = fs.listFiles(staging, True)
    while files.hasNext():
        source = files.next().getPath()
        if not source.getName().endswith(".parquet"):
            continue
        relative = source.getParent().toString()[len(staging.toString()) + 1:]
        target_dir = hadoop_path(f"{location}/{relative}")
        fs.mkdirs(target_dir)
        target = hadoop_path(target_dir, f"{name}.parquet")
        fs.delete(target, False)
        if not fs.rename(source, target):
            raise OSError(f"could not move {source} to {target}")
        partitions.append(dict(part.split("=", 1) for part in relative.split("/")))
    fs.delete(staging, True)
    for partition in partitions:
        spec = ", ".join(f"{key}='{value}'" for key, value in partition.items())
        spark.sql(f"ALTER TABLE {table} ADD IF NOT EXISTS PARTITION ({spec})")
    return partitions


def ensure_external_table(spark: SparkSession, table: str, schema: T.StructType, partition_by: tuple[str, ...]) -> None:
    """Like :func:`~recsys_spark.tables.ensure_table`, but external (under the database's directory):
    dropping a partition of a managed table deletes its files at once, under a reader still scanning
    them; the live refresh deletes a dropped partition's files itself, a compaction interval later."""
    if not spark.catalog.tableExists(table):
        database, name = table.split(".", 1)
        location = next(r.info_value for r in spark.sql(f"DESCRIBE DATABASE {database}").collect()
                        if r.info_name == "Location")
        path = spark._jvm.org.apache.hadoop.fs.Path(f"{location}/{name}")
        path.getFileSystem(spark._jsc.hadoopConfiguration()).mkdirs(path)  # else Spark warns it is missing
        columns = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in schema.fields)
        spark.sql(f"CREATE TABLE {table} ({columns}) USING parquet PARTITIONED BY ({', '.join(partition_by)}) "
                  f"LOCATION '{location}/{name}'")
    ensure_table(spark, table, schema, partition_by)  # checks the schema of an existing one


# --- the micro-batch -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    """The night the live lists build on: the latest published night and the model that scored it."""
    ds: str
    model_version: str

    @property
    def cutoff(self) -> dt.datetime:
        return Q.day_end(self.ds)


def current_base(cfg: Config) -> Base:
    record = read_record(cfg.storage.root, qualified(cfg.storage.database, RECOMMENDATIONS))
    return Base(record["ds"], record["model_version"])


class LiveRefresh:
    """The ``foreachBatch`` function of the stream (module docstring); keeps the base night's scorer,
    vocabulary and states cached until a new night is published."""

    def __init__(self, spark: SparkSession, cfg: Config):
        self.spark, self.cfg = spark, cfg
        db = cfg.storage.database
        self.live_table = qualified(db, LIVE_UPDATES)
        self.events_table = qualified(db, EVENTS)
        self.rejected_table = qualified(db, EVENTS_REJECTED)
        ensure_external_table(spark, self.live_table, LIVE_SCHEMA, (S.DS, BATCH))
        ensure_table(spark, self.events_table, S.EVENTS_TABLE_SCHEMA)
        ensure_table(spark, self.rejected_table, S.REJECTED_SCHEMA, partition_by=(S.DS, S.STAGE))
        self.live_location = table_location(spark, self.live_table)
        self.events_location = table_location(spark, self.events_table)
        self.rejected_location = table_location(spark, self.rejected_table)
        self.progress = stream_dir(cfg) / "progress.jsonl"
        self.progress.parent.mkdir(parents=True, exist_ok=True)
        self._base: Optional[Base] = None
        self._scorer: Optional[NightScorer] = None
        self._vocabulary: Optional[DataFrame] = None
        self._night_states: Optional[DataFrame] = None

    def _load_base(self, base: Base) -> NightScorer:
        if base != self._base:
            for frame in (self._vocabulary, self._night_states):
                if frame is not None:
                    frame.unpersist()
            if self._scorer is not None:
                self._scorer.release()
            db = self.cfg.storage.database
            self._scorer = night_scorer(self.spark, self.cfg, base.ds, base.model_version)
            self._vocabulary = item_index_version(self.spark, db, base.ds).select(S.ITEM_ID, S.ITEM_IDX).cache()
            self._night_states = read_user_state(self.spark, db, base.ds).select(S.USER_ID, S.ITEM_IDX, LAST_TS).cache()
            self._base = base
            log.info("live refresh builds on night %s, model %s", base.ds, base.model_version)
        return self._scorer

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.time()
        raw = batch.persist()
        try:
            summary = self.fold(raw, batch_id)
        finally:
            raw.unpersist()
        summary.update(batch=batch_id, started=round(started, 3), committed=round(time.time(), 3),
                       seconds=round(time.time() - started, 2))
        with self.progress.open("a") as out:
            out.write(json.dumps(summary, sort_keys=True) + "\n")
        log.info("micro-batch %d: %d rows, %d accepted, %d rejected %s, %d before the night's cut-off, "
                 "%d users refreshed on night %s%s (%.1fs)", batch_id, summary["rows"], summary["accepted"],
                 sum(summary["rejected"].values()), summary["rejected"] or "", summary["before_cutoff"],
                 summary["users_refreshed"], summary["base_ds"], summary["note"], summary["seconds"])

    def fold(self, raw: DataFrame, batch_id: int) -> dict[str, Any]:
        """Micro-batch ``batch_id`` (steps 1-5 of the module docstring); returns its summary. Few
        Spark jobs on purpose: one tally, one write per table, and one fold-score-write."""
        spark, cfg = self.spark, self.cfg
        now = dt.datetime.now(dt.timezone.utc)
        today = now.date().isoformat()
        name = f"stream-b{batch_id:012d}"
        phases: dict[str, float] = {}
        mark = [time.time()]

        def phase(label: str) -> None:
            phases[label] = round(time.time() - mark[0], 3)
            mark[0] = time.time()

        base = current_base(cfg)
        cutoff = F.lit(base.cutoff)
        valid, rejected = validate_stream_rows(raw, today, list(S.EVENT_TYPES))
        phase("start")
        tally = {r["_kind"]: r["n"] for r in rejected.select(F.col(S.REASON).alias("_kind")).unionByName(
            valid.select(F.when(F.col(S.TS) < cutoff, "_before_cutoff").otherwise("_accepted").alias("_kind")))
            .groupBy("_kind").agg(F.count(F.lit(1)).alias("n")).collect()}
        phase("tally")
        before_cutoff = tally.pop("_before_cutoff", 0)
        n_accepted = tally.pop("_accepted", 0) + before_cutoff
        if tally:
            append_files(spark, self.rejected_table, rejected.withColumn(S.DS, F.lit(today))
                         .withColumn(S.STAGE, F.lit(STREAM_STAGE)), (S.DS, S.STAGE), name, self.rejected_location)
            log.warning("micro-batch %d: quarantined %d rows into %s (stage=%s): %s", batch_id,
                        sum(tally.values()), self.rejected_table, STREAM_STAGE, tally)
        if n_accepted:
            append_files(spark, self.events_table, valid.withColumn(S.DS, F.date_format(S.TS, "yyyy-MM-dd")),
                         (S.DS,), name, self.events_location)
        phase("append")
        summary: dict[str, Any] = {"rows": n_accepted + sum(tally.values()), "accepted": n_accepted,
                                   "rejected": tally, "before_cutoff": before_cutoff, "base_ds": base.ds,
                                   "model_version": base.model_version, "users_refreshed": 0,
                                   "rebase": False, "compacted": False, "note": "", "phases": phases}
        partitions = self._all_partitions()  # one metastore listing per micro-batch, also for _record
        committed = sorted(b for ds, b in partitions if ds == base.ds)
        if batch_id in committed:  # a replay of a committed micro-batch: its rows are there already
            self._record(base, batch_id, committed, partitions, compacted=False)
            summary["note"] = " (already committed: replay)"
            return summary
        scorer = self._load_base(base)
        earlier = [b for b in committed if b < batch_id]
        if earlier:
            events = valid.where(F.col(S.TS) >= cutoff)
        else:  # the first micro-batch on this night: everything after its cut-off, this batch included
            summary["rebase"] = True
            summary["note"] = " (first on this night: every event after its cut-off re-folded)"
            spark.catalog.refreshTable(self.events_table)
            events = (spark.table(self.events_table)
                      .where(F.col(S.DS) >= base.cutoff.date().isoformat()).where(F.col(S.TS) >= cutoff))
        phase("base")
        if not earlier or before_cutoff < n_accepted:
            self._fold_and_commit(scorer, base, batch_id, earlier, partitions, events, now, summary, phase)
        else:
            self._record(base, batch_id, earlier, partitions, compacted=False)
            phase("commit")
        return summary

    def _fold_and_commit(self, scorer: NightScorer, base: Base, batch_id: int, earlier: list[int],
                         partitions: list[tuple[str, int]], events: DataFrame, now: dt.datetime,
                         summary: dict[str, Any], phase) -> None:
        spark, cfg = self.spark, self.cfg
        events = (events.where(F.col(S.EVENT_TYPE).isin(*cfg.sequences.event_types))
                  .select(S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.TS, S.SESSION_ID)
                  .join(F.broadcast(self._vocabulary), S.ITEM_ID, "left"))
        # The micro-batch's users are few: broadcast them into the semi-joins with the night's and the
        # live states, and those few states into the outer joins, instead of shuffling the states.
        touched = events.select(S.USER_ID).distinct()
        live_before = (spark.table(self.live_table)
                       .where((F.col(S.DS) == base.ds) & (F.col(BATCH) < batch_id)))
        from_live = (newest_rows(live_before.join(F.broadcast(touched), S.USER_ID, "left_semi"))
                     .select(S.USER_ID, EVENTS))
        night = self._night_states.join(F.broadcast(touched), S.USER_ID, "left_semi")
        prior = touched.join(F.broadcast(night), S.USER_ID, "left").join(F.broadcast(from_live), S.USER_ID, "left")
        states = fold_events(prior, events, cfg.sequences.max_history, cfg.sequences.collapse_repeats)
        carry = tuple(f for f in LIVE_SCHEMA.fields if f.name in STATE_COLUMNS and f.name != S.USER_ID)
        refreshed = Observation(f"refreshed-{batch_id}")  # counted by the write itself, not a read-back job
        rows = (scorer.score(states, carry, cfg.stream.partitions).observe(refreshed, F.count(F.lit(1)).alias("users"))
                .withColumn(UPDATED_AT, F.lit(now)).withColumn(S.DS, F.lit(base.ds))
                .withColumn(BATCH, F.lit(batch_id).cast("long")))
        compact = bool(earlier) and cfg.stream.compact_every > 0 and batch_id % cfg.stream.compact_every == 0
        if compact:  # carry every other live user's newest row, so the older partitions can go
            carried = newest_rows(live_before).join(F.broadcast(touched), S.USER_ID, "left_anti")
            rows = rows.unionByName(carried.withColumn(BATCH, F.lit(batch_id).cast("long")))
            summary["compacted"] = True
        location = self._batch_location(base.ds, batch_id)
        (rows.select(*[f.name for f in LIVE_SCHEMA.fields if f.name not in (S.DS, BATCH)])
         # Not fewer files than scoring partitions: a coalesce would pull the scoring into fewer tasks.
         .coalesce(cfg.stream.partitions).write.mode("overwrite").parquet(location))
        summary["users_refreshed"] = refreshed.get["users"]
        phase("fold_score_write")
        # The commit: one metastore update makes the whole micro-batch visible.
        spark.sql(f"ALTER TABLE {self.live_table} ADD IF NOT EXISTS PARTITION "
                  f"({S.DS}='{base.ds}', {BATCH}={batch_id}) LOCATION '{location}'")
        if summary["rebase"]:
            spark.sql(live_view_sql(cfg.storage.database, base.ds))
        self._record(base, batch_id, earlier + [batch_id], partitions, compacted=compact)
        phase("commit")

    def _record(self, base: Base, batch_id: int, batches: list[int], partitions: list[tuple[str, int]],
                compacted: bool) -> None:
        """After a commit: drop the partitions it made redundant (an earlier night's, and after a
        compaction the ones it rewrote) and write the live record read by ``recsys recommend --live``.
        ``partitions``: the table's partitions listed before the commit (the one it adds is never
        dropped). A dropped partition's files are deleted a compaction interval later, so a reader
        that listed it just before is not cut off mid-scan."""
        root = self.cfg.storage.root
        pending = (read_live_record(root) or {}).get("pending_delete", [])
        to_drop = [(ds, b) for ds, b in partitions if ds != base.ds or (compacted and b < batch_id)]
        if to_drop:
            specs = ", ".join(f"PARTITION ({S.DS}='{ds}', {BATCH}={b})" for ds, b in to_drop)
            self.spark.sql(f"ALTER TABLE {self.live_table} DROP IF EXISTS {specs}")
            pending += [{"location": self._batch_location(ds, b), "dropped_after": batch_id} for ds, b in to_drop]
        grace = max(self.cfg.stream.compact_every, 1)
        expired = [p for p in pending if p["dropped_after"] <= batch_id - grace or p["dropped_after"] > batch_id]
        for entry in expired:
            _remove_tree(self.spark, entry["location"])
        kept = [b for b in batches if not compacted or b >= batch_id]
        write_live_record(root, {
            "table": self.live_table, "ds": base.ds, "model_version": base.model_version, "batch": batch_id,
            "locations": [self._batch_location(base.ds, b) for b in kept],
            "pending_delete": [p for p in pending if p not in expired],
            "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})

    def _batch_location(self, ds: str, batch_id: int) -> str:
        return f"{self.live_location}/{BATCHES_DIR}/ds={ds}/batch={batch_id}"

    def _all_partitions(self) -> list[tuple[str, int]]:
        out = []
        for row in self.spark.sql(f"SHOW PARTITIONS {self.live_table}").collect():
            spec = dict(part.split("=", 1) for part in row[0].split("/"))
            out.append((spec[S.DS], int(spec[BATCH])))
        return out


def _remove_tree(spark: SparkSession, directory: str) -> None:
    path = spark._jvm.org.apache.hadoop.fs.Path(directory)
    path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(path, True)


# --- running the query ---------------------------------------------------------------------------

def start_stream(spark: SparkSession, cfg: Config, refresh: LiveRefresh) -> StreamingQuery:
    """Start one ``availableNow`` run: it folds every file that has landed (in micro-batches of at
    most ``stream.max_files_per_trigger`` files) and ends by itself."""
    sc = cfg.stream
    return (landing_source(spark, landing_dir(cfg), sc.format, sc.max_files_per_trigger).writeStream
            .foreachBatch(refresh).option("checkpointLocation", str(stream_dir(cfg) / "checkpoint"))
            .queryName("recsys-live").trigger(availableNow=True).start())


class LiveStream:
    """The live refresh as a loop of ``availableNow`` runs, one every ``stream.trigger_seconds``.

    Not one ``processingTime`` query, because Structured Streaming has no graceful stop:
    ``query.stop()`` interrupts a micro-batch that began a moment earlier (safe, as it is replayed from
    the checkpoint, but it fails the fold's jobs with a traceback). A run ends by itself once caught
    up, so a stop waits for it and never interrupts one."""

    def __init__(self, spark: SparkSession, cfg: Config):
        current_base(cfg)  # fail before starting when no night has been published yet
        self.spark, self.cfg = spark, cfg
        self.refresh = LiveRefresh(spark, cfg)
        self.last_batch: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def run(self, once: bool = False) -> None:
        """Catch up on every landed file; unless ``once``, keep doing so until :meth:`request_stop`."""
        announced = False
        while True:
            started = time.monotonic()
            query = start_stream(self.spark, self.cfg, self.refresh)
            while query.isActive:
                query.awaitTermination(0.5)  # short waits, so a signal handler runs promptly
                if self._stop.is_set() and not announced:
                    log.info("stop requested: finishing the micro-batches in flight")
                    announced = True
            if query.exception() is not None:
                raise query.exception()
            self.last_batch = (query.lastProgress or {}).get("batchId", self.last_batch)
            if once or self._stop.wait(max(0.0, self.cfg.stream.trigger_seconds - (time.monotonic() - started))):
                break
        log.info("stream stopped after micro-batch %s", self.last_batch)

    def request_stop(self) -> None:
        self._stop.set()

    def start(self) -> "LiveStream":
        """Run the loop in a background thread (for a process that does other work meanwhile)."""
        def target() -> None:
            try:
                self.run()
            except BaseException as error:  # re-raised by stop()
                self._error = error
        self._thread = threading.Thread(target=target, name="recsys-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background loop after the run in flight and re-raise what failed it, if anything."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


def run_stream(spark: SparkSession, cfg: Config, once: bool) -> None:
    """Catch up on every landed file and exit (``once``, for cron), or run until SIGTERM/SIGINT."""
    stream = LiveStream(spark, cfg)
    log.info("streaming %s files from %s (checkpoint %s)%s", cfg.stream.format, landing_dir(cfg),
             stream_dir(cfg) / "checkpoint", ": catching up, then exiting" if once else "; SIGTERM stops it")
    handlers = {sig: signal.signal(sig, lambda *_: stream.request_stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stream.run(once)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
