"""Run a plan of pipeline steps in ONE fresh process (one JVM, one Derby metastore) and write what it
saw as JSON: ``python tests/reliability/_driver.py PLAN.json RESULT.json``.

The reliability tests need real processes with their own metastore (embedded Derby admits one JVM),
so they drive the real jobs through this script instead of the test session's SparkSession. Steps:

* ``{"job": "score", "argv": [...]}``: ``jobs.<name>.main(argv)``; records the exit code.
* ``{"snapshot": "label"}``: a content digest of every table partition, dataset file and model.
* ``{"events": [[user, item, type, ts_iso, ds], ...], "ds": [...]}``: overwrite those event nights.
* ``{"metrics": [[version, name, metric, k, value], ...], "ds": ds}``: offline_metrics rows.
* ``{"shuffle_events": ds, "files": n}``: rewrite night ``ds`` of ``events`` with the same rows in
  another order and number of files.
* ``{"promote": version}``: set the registry's production pointer (test set-up, not a gate).
* ``{"fault": "first_attempt"}``: every ``mapInPandas`` task raises on its first attempt (Spark
  retries it when the master allows task retries, e.g. ``local[2,3]``).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _digest(rows) -> dict:
    lines = sorted(repr(tuple(r)) for r in rows)
    return {"rows": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def snapshot(spark, cfg) -> dict:
    """Per table and partition, per dataset directory and per model: row count and content digest."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from recsys_spark.model import load_model
    from recsys_spark.registry import load_registry, models_root
    from training.trainer import parameter_fingerprint

    db = cfg.storage.database
    out: dict = {"tables": {}, "datasets": {}, "models": {}, "locations": {}, "model_versions": {}}
    for table in spark.catalog.listTables(db):
        name = f"{db}.{table.name}"
        # Every column as Spark's text (timestamps in the session's UTC): digests must not depend
        # on this process's local time zone, which collect() would apply to timestamps.
        frame = spark.table(name)
        frame = frame.select([F.col(c).cast("string").alias(c) for c in frame.columns])
        keys = [c for c in ("ds", "stage", "version") if c in frame.columns]
        groups: dict = {}
        for row in frame.collect():
            groups.setdefault("/".join(str(row[k]) for k in keys), []).append(row)
        out["tables"][table.name] = {k: _digest(v) for k, v in groups.items()}
        if table.name == "recommendations":
            out["model_versions"] = {k: sorted({r["model_version"] for r in v}) for k, v in groups.items()}
            for part in spark.sql(f"SHOW PARTITIONS {name}").collect():
                ds = part[0].split("=", 1)[1]
                desc = spark.sql(f"DESCRIBE TABLE EXTENDED {name} PARTITION (ds='{ds}')").collect()
                out["locations"][ds] = next(r.data_type for r in desc if r.col_name == "Location")
    for night in sorted((Path(cfg.storage.root) / "datasets").glob("ds=*")):
        parts = {}
        for sub in sorted(p for p in night.iterdir() if p.is_dir() and not p.name.startswith(".")):
            table = pq.ParquetDataset(str(sub)).read()
            parts[sub.name] = _digest(zip(*[table.column(c).to_pylist() for c in table.column_names]))
        out["datasets"][night.name] = parts
    registry = load_registry(models_root(cfg.storage.root))
    for version, entry in registry["versions"].items():
        try:
            out["models"][version] = parameter_fingerprint(load_model(entry["artifact"]))
        except FileNotFoundError:
            out["models"][version] = None
    out["production"] = registry["production"]
    return out


def main(plan_path: str, result_path: str) -> int:
    import importlib

    from recsys_spark.config import load_config
    from recsys_spark.session import get_spark

    plan = json.loads(Path(plan_path).read_text())
    cfg = load_config(plan["conf"], plan["overrides"])
    overrides = [arg for override in plan["overrides"] for arg in ("--set", override)]
    result: dict = {"steps": []}

    def save():
        Path(result_path).write_text(json.dumps(result, indent=1, sort_keys=True))

    for step in plan["steps"]:
        if "job" in step:
            module = importlib.import_module(f"jobs.{step['job']}")
            try:
                rc = module.main(["--conf", plan["conf"], *overrides, *step["argv"]])
            except SystemExit as exc:
                rc = exc.code
            except Exception as exc:  # noqa: BLE001 - the test decides whether a crash was expected
                rc = f"{type(exc).__name__}: {exc}"
            result["steps"].append({"job": step["job"], "argv": step["argv"], "rc": rc})
        elif "snapshot" in step:
            result[step["snapshot"]] = snapshot(get_spark(cfg), cfg)
        elif "events" in step:
            import datetime as dt

            from recsys_spark import schemas as S
            from recsys_spark.events import write_events
            spark = get_spark(cfg)
            rows = [(u, i, t, dt.datetime.fromisoformat(ts), None, ds) for u, i, t, ts, ds in step["events"]]
            write_events(spark, cfg.storage.database,
                         spark.createDataFrame(rows, S.EVENTS_TABLE_SCHEMA), step["ds"])
        elif "metrics" in step:
            import pandas as pd

            from recsys_spark.evaluation import write_offline_metrics
            rows = [(v, n, "leave_last_out", "test", m, k, value, step["ds"]) for v, n, m, k, value in step["metrics"]]
            write_offline_metrics(get_spark(cfg), cfg.storage.database, pd.DataFrame(rows, columns=[
                "model_version", "name", "protocol", "split", "metric", "k", "value", "ds"]), step["ds"])
        elif "shuffle_events" in step:
            from pyspark.sql import functions as F

            from recsys_spark.events import events_table
            spark = get_spark(cfg)
            night = (spark.table(events_table(cfg.storage.database)).where(F.col("ds") == step["shuffle_events"])
                     .orderBy(F.rand(5)).repartition(step["files"]).localCheckpoint())
            night.write.insertInto(events_table(cfg.storage.database), overwrite=True)
        elif "promote" in step:
            from recsys_spark.registry import models_root, set_production
            set_production(models_root(cfg.storage.root), step["promote"], reason="test set-up")
        elif step.get("fault") == "first_attempt":
            _fail_first_attempts()
        else:
            raise ValueError(f"unknown step {step}")
        save()
    save()
    return 0


def _fail_first_attempts() -> None:
    """Wrap ``DataFrame.mapInPandas`` so the first attempt of every task raises before any output."""
    from pyspark import TaskContext
    from pyspark.sql.classic.dataframe import DataFrame

    original = DataFrame.mapInPandas

    def flaky(self, func, schema, *args, **kwargs):
        def first_attempt_fails(batches):
            if TaskContext.get().attemptNumber() == 0:
                raise RuntimeError("injected fault: first attempt of this task fails")
            yield from func(batches)
        return original(self, first_attempt_fails, schema, *args, **kwargs)

    DataFrame.mapInPandas = flaky


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
