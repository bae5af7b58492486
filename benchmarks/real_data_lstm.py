"""Real-data benchmark of the LSTM through the real jobs, next to the baselines and ANCHORS.md.

Per dataset, in a fresh temp workspace: ``recsys import-events`` -> ``recsys build-sequences`` (last
night, whole history) -> two LSTMs, each trained with ``recsys train`` (Horovod, 2 processes on local
Spark): one with the **shipped defaults** (``conf/local.yaml``; the per-dataset overrides below are
data preparation and protocol only), one with the settings **``recsys tune``** chose on the night's
validation split within the stated budget (``--tune-trials``, ``--tune-timeout``) -> evaluation:

* MovieLens-100K ``u.data`` and Amazon Beauty (``Beauty.txt``): ``recsys evaluate`` on the night's
  leave-last-out test split, both LSTMs and the baselines on identical queries (full ranking over
  items seen in the fit data, history masked, conservative ties);
* YooChoose clicks 100k: the GRU4Rec session protocol on the ``test`` file, which no night holds, so
  the library is called here: baselines fitted on every ``train_full`` session, queries from
  :func:`recsys_spark.evaluation.session_queries`, the same ``evaluate`` as the baselines.

Next to it, the similar-items protocol (``item_to_item``: each query ranked with the list of its last
item only, the item itself never listed) for the model's three rules (``blend`` shipped, ``next``
and ``cosine`` compared), last-item transitions and ALS item-factor cosine: from ``recsys evaluate``
on the leave-last-out datasets, on the same session queries on yoochoose.

Protocol differences, recorded with the results: the leave-last-out baselines fit on all but each
user's last event; the LSTM also leaves out the second-to-last event (its validation target) of
every MovieLens user and of a seeded 20% of the Beauty users. On yoochoose
(``sequences.split=validation_only``, the test file being external) the LSTM trains without the last
event of a seeded 10% of the sessions (its validation targets), the baselines on all of
``train_full``. The jobs order timestamp ties by item id, the ANCHORS cross-checks by file order.

The JSON keeps every earlier run's rows of a dataset under ``history`` when it is re-measured.

    .venv/bin/python -m benchmarks.real_data_lstm [--datasets movielens-100k beauty yoochoose]
        [--tune-trials 8] [--tune-timeout 1200] [--setups length_buckets one_process recorded]

``--setups recorded`` adds a row trained with ``benchmarks/settings/<dataset>.yaml``: the best settings
measured on that dataset so far, each file saying where its values came from.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_spark.similar import ITEM_TO_ITEM

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"
# Per dataset, the best settings measured so far, with their provenance: ``--setups recorded``.
RECORDED = ROOT / "benchmarks" / "settings"
RECSYS = Path(sys.executable).parent / "recsys"
DEFAULTS, TUNED = "bench-defaults", "bench-tuned"
log = logging.getLogger("benchmark")

SPARK = ["spark.master=local[2]", "spark.conf={spark.driver.memory: 4g, spark.sql.shuffle.partitions: '4'}"]
BASELINES = "evaluate.baselines=[most_popular,transitions,sknn,als]"
DATASETS = {
    # name: (import format, file, build-sequences overrides: data preparation and protocol only)
    "movielens-100k": ("movielens", DATA / "movielens-100k" / "u.data",
                       ["sequences.min_item_support=1", "sequences.min_user_support=3",
                        "sequences.window_length=50", "sequences.stride=25"]),
    "beauty": ("sequences", DATA / "amazon-beauty-s3rec" / "Beauty.txt",
               ["sequences.min_item_support=1", "sequences.min_user_support=3",
                "sequences.window_length=50", "sequences.stride=25",
                # Validate on a seeded 20% of the users (4.4k queries); the other 80% train on their
                # second-to-last item, as the baselines do.
                "sequences.validation_fraction=0.2"]),
    "yoochoose": ("gru4rec", DATA / "yoochoose-clicks-100k" / "yoochoose-clicks-100k_train_full.txt",
                  ["sequences.min_item_support=1", "sequences.min_user_support=2",
                   "sequences.collapse_repeats=false", "sequences.window_length=20",
                   "sequences.stride=20",
                   # The test file is external: validate on the last click of 10% of the sessions and
                   # train on every other click (one held out per session would cost a third of the
                   # targets; 30% steadied the blend's weights but cost every row accuracy: README).
                   "sequences.split=validation_only", "sequences.validation_fraction=0.1",
                   # The session protocol ranks every item, the session's own included.
                   "evaluate.mask_seen=false"]),
}
COMMON = ["sequences.lookback_days=100000", "sequences.max_rejected_share=0.01",
          "sequences.max_history=200", "train.backend=horovod", "train.launcher=spark",
          "train.num_proc=2", "train.threads_per_proc=1", "evaluate.protocols=[leave_last_out]",
          "evaluate.splits=[test]", BASELINES, "similar.compare_rules=[cosine,blend]", *SPARK]
ANCHORS = {
    # From ANCHORS.md; the baselines' figures are on the benchmark loaders' exact splits.
    "movielens-100k": {"transitions": {"hr@10": 0.1457, "ndcg@10": 0.0794, "hr@20": 0.2266, "ndcg@20": 0.0997},
                       "most_popular": {"hr@10": 0.0862, "ndcg@10": 0.0440, "hr@20": 0.1266, "ndcg@20": 0.0541}},
    "beauty": {"SASRec (published)": {"hr@10": 0.0921, "ndcg@10": 0.0531},
               "eSASRec (published)": {"hr@10": 0.0928, "ndcg@10": 0.0523},
               "transitions": {"hr@10": 0.0757, "ndcg@10": 0.0503, "hr@20": 0.0926, "ndcg@20": 0.0545}},
    "yoochoose": {"GRU4Rec bpr-max (official)": {"hr@10": 0.6154, "hr@20": 0.6887, "mrr@20": 0.3650},
                  "GRU4Rec CE+logQ (official)": {"hr@10": 0.6083, "hr@20": 0.6814, "mrr@20": 0.3674},
                  "V-SKNN": {"hr@10": 0.5972, "hr@20": 0.6703, "mrr@20": 0.3561},
                  "transitions": {"hr@10": 0.5479, "hr@20": 0.5907, "mrr@20": 0.3430}},
}
REPORTED = ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20")
LENGTH_BUCKETS = ["train.feed=arrow", "train.length_buckets=8"]
ONE_PROCESS = [*LENGTH_BUCKETS, "train.backend=single", "train.threads_per_proc=2"]
SETUPS = {
    # ``--setups``: the shipped defaults, or the settings ``recsys tune`` chose, trained another way
    # (same model and settings), each an extra LSTM row with its own speed, or the recorded settings:
    # name -> (label, overrides, the settings it starts from).
    "length_buckets": ("shipped defaults, batches grouped by length (`train.length_buckets=8`, Arrow feed)",
                       LENGTH_BUCKETS, "defaults"),
    "one_process": ("shipped defaults, 1 process x 2 threads, `train.length_buckets=8`, Arrow feed",
                    ONE_PROCESS, "defaults"),
    "tuned_one_process": ("settings of `recsys tune`, 1 process x 2 threads, `train.length_buckets=8`, Arrow feed",
                          ONE_PROCESS, "tuned"),
    "recorded": ("recorded settings (`benchmarks/settings/<dataset>.yaml`), 1 process x 2 threads, "
                 "`train.length_buckets=8`, Arrow feed", ONE_PROCESS, "recorded"),
}


def _recsys(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([str(RECSYS), *args, "--log-level", "WARNING"], cwd=cwd,
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"recsys {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return time.perf_counter() - start


def _sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def _rounded(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 4) for k in REPORTED if k in metrics}


def _session_evaluation(workdir: Path, ds: str, overrides: list[str], versions: list[str]) -> list[dict]:
    """The session protocol on the yoochoose test file: test items are mapped through the night's
    item_index; items it lacks get fresh indices past the vocabulary, which the baselines never saw
    and the model ignores in inputs, and as targets are skipped (not rankable), as in real_data.py."""
    from recsys_spark import baselines as B
    from recsys_spark import evaluation as E
    from recsys_spark import schemas as S
    from recsys_spark.config import load_config
    from recsys_spark.datasets import DatasetMetadata, dataset_dir
    from recsys_spark.session import get_spark
    from recsys_spark.similar import evaluate_item_to_item

    cfg = load_config("local", [*overrides, "spark.hive=false", f"storage.root={workdir / 'var'}",
                                 f"spark.warehouse_dir={workdir / 'session-warehouse'}"])
    spark = get_spark(cfg)
    tables = workdir / "var" / "warehouse" / "recsys.db"
    meta = DatasetMetadata.load(dataset_dir(cfg.storage.root, ds))
    index = spark.read.parquet(str(tables / "item_index" / f"version={ds}")).toPandas()
    lookup = dict(zip(index[S.ITEM_ID].astype(str), index[S.ITEM_IDX].astype(int)))
    test = pd.read_csv(DATA / "yoochoose-clicks-100k" / "yoochoose-clicks-100k_test.txt", sep="\t",
                       dtype={"SessionId": str, "ItemId": str})
    test["order"] = np.arange(len(test))
    test = test.sort_values(["SessionId", "Time", "order"], kind="stable")
    unknown = sorted(set(test["ItemId"]) - set(lookup))
    lookup.update({item: meta.num_items + i for i, item in enumerate(unknown)})
    num_items = meta.num_items + len(unknown)
    sessions = (test.assign(item_idx=test["ItemId"].map(lookup))
                .groupby("SessionId", sort=False)["item_idx"].apply(list).reset_index())
    test_df = spark.createDataFrame([(s, [int(i) for i in items]) for s, items in
                                     zip(sessions["SessionId"], sessions["item_idx"])],
                                    f"{S.USER_ID} string, {S.ITEM_IDX} array<int>")
    queries = E.collect_queries(E.session_queries(test_df))
    fit = spark.read.parquet(str(tables / "user_sequences" / f"ds={ds}")).select(S.USER_ID, S.ITEM_IDX, S.TS)
    data = B.prepare_fit_data(fit, num_items)
    ev = cfg.evaluate
    fitted: dict = {}
    results = E.evaluate_baselines(data, queries, ev.baselines, ev, protocol=E.SESSION, split=E.TEST,
                                   mask_seen=False, fitted=fitted)
    # The registry records the artifact path as the train job saw it (relative to its cwd).
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        scorers = {v: E.model_scorer(cfg.storage.root, v, num_items) for v in versions}
        shipped = E.model_artifact(cfg.storage.root, DEFAULTS).resolve()
    finally:
        os.chdir(cwd)
    for version, scorer in scorers.items():
        model = E.evaluate(scorer, queries, data.popularity, name=E.MODEL_NAME, protocol=E.SESSION,
                           split=E.TEST, ks=ev.ks, mask_seen=False, batch_size=ev.batch_size)
        model.model_version = version
        results.append(model)
    # Similar items are scored with the shipped defaults' model only.
    results += evaluate_item_to_item(queries, data, fitted, {DEFAULTS: shipped}, cfg)
    data.sequences.unpersist()
    spark.stop()
    return [{"name": r.name, "protocol": r.protocol, "model_version": r.model_version, "metrics": r.metrics,
             "n_queries": r.n_queries, "n_skipped": r.n_skipped, "seconds": r.seconds} for r in results]


def _training(workdir: Path, version: str) -> dict:
    trained = json.loads((workdir / "var" / "models" / version / "metrics.json").read_text())
    history = trained["history"]
    return {
        "epochs_run": len(history), "best_epoch": trained["best_epoch"],
        "train_seconds_per_epoch": round(float(np.median([h["train_seconds"] for h in history])), 1),
        "seconds_per_epoch_with_validation": round(float(np.median([h["seconds"] for h in history])), 1),
        "positions_per_second": round(float(np.median([h["positions_per_second"] for h in history]))),
        "validation": _rounded(trained["validation"]),
        "world_size": trained["world_size"], "loss": trained["loss"]}


def _version(variant: str) -> str:
    return {"defaults": DEFAULTS, "tuned": TUNED}.get(variant, f"bench-{variant}")


def run_dataset(name: str, workdir: Path, extra: list[str], tune_trials: int, tune_timeout: int,
                setups: tuple[str, ...] = ()) -> dict:
    fmt, path, own = DATASETS[name]
    overrides = [*COMMON, *own, *extra]
    seconds = {"import": _recsys(["import-events", "--format", fmt, "--path", str(path), *_sets(overrides)], workdir)}
    ds = sorted(p.name.split("=")[1] for p in (workdir / "var/warehouse/recsys.db/events").glob("ds=*"))[-1]
    seconds["build_sequences"] = _recsys(["build-sequences", "--ds", ds, *_sets(overrides)], workdir)
    seconds["train_defaults"] = _recsys(["train", "--ds", ds, "--model-version", DEFAULTS, *_sets(overrides)], workdir)
    versions = [DEFAULTS]
    tuning = tuned_overlay = None
    if tune_trials:
        budget = [f"tune.trials={tune_trials}", f"tune.timeout_s={tune_timeout}"]
        seconds["tune"] = _recsys(["tune", "--ds", ds, *_sets([*overrides, *budget])], workdir)
        tuned_overlay = workdir / "var" / "tuning" / f"ds={ds}" / "tuned.yaml"
        seconds["train_tuned"] = _recsys(["train", "--ds", ds, "--model-version", TUNED, "--overlay",
                                          str(tuned_overlay), *_sets(overrides)], workdir)
        versions.append(TUNED)
        trials = json.loads((tuned_overlay.parent / "trials.json").read_text())
        tuning = {"budget": trials["budget"], "trials": trials["n_trials"], "pruned": trials["n_pruned"],
                  "seconds": trials["seconds"], "chosen": trials["best"]["params"],
                  "validation_ndcg@10": {"given": round(trials["given"]["value"], 4),
                                         "tuned": round(trials["best"]["value"], 4)}}
    for setup in setups:
        _, setup_overrides, start_from = SETUPS[setup]
        overlay_file = {"tuned": tuned_overlay, "recorded": RECORDED / f"{name}.yaml"}.get(start_from)
        overlay_args = ["--overlay", str(overlay_file)] if overlay_file else []
        seconds[f"train_{setup}"] = _recsys(["train", "--ds", ds, "--model-version", _version(setup), *overlay_args,
                                             *_sets([*overrides, *setup_overrides])], workdir)
        versions.append(_version(setup))
    meta = json.loads((workdir / "var" / "datasets" / f"ds={ds}" / "metadata.json").read_text())
    start = time.perf_counter()
    if name == "yoochoose":
        protocol = "session (train_full -> test), no masking"
        scored = _session_evaluation(workdir, ds, overrides, versions)
    else:
        protocol = "leave-last-out test, seen items masked"
        _recsys(["evaluate", "--ds", ds, *[x for v in versions for x in ("--model-version", v)],
                 *_sets(overrides)], workdir)
        report = json.loads((workdir / "var" / "reports" / f"ds={ds}" / f"evaluate_{'_'.join(versions)}.json").read_text())
        scored = [{"name": r["name"], "protocol": r["protocol"], "model_version": r["model_version"],
                   "metrics": r["metrics"], "n_queries": r["n_queries"], "n_skipped": r["n_skipped"],
                   "seconds": r["seconds"]} for r in report]
    seconds["evaluate"] = time.perf_counter() - start
    similar = [s for s in scored if s["protocol"] == ITEM_TO_ITEM and s["model_version"] == DEFAULTS]
    scored = [s for s in scored if s["protocol"] != ITEM_TO_ITEM]
    models = {s["model_version"]: s for s in scored if s["name"] == "model"}
    return {
        "dataset": name, "ds": ds, "protocol": protocol, "items": meta["num_items"] - 1,
        "training_positions_per_epoch": meta["num_training_positions"],
        "n_queries": models[DEFAULTS]["n_queries"], "n_skipped": models[DEFAULTS]["n_skipped"],
        "lstm": {variant: _rounded(models[_version(variant)]["metrics"])
                 for variant in ("defaults", "tuned", *setups) if _version(variant) in models},
        "baselines": {s["name"]: _rounded(s["metrics"]) for s in scored if s["name"] != "model"},
        "anchors": ANCHORS[name],
        "item_to_item": {"n_queries": similar[0]["n_queries"], "n_skipped": similar[0]["n_skipped"],
                         "systems": {s["name"]: _rounded(s["metrics"]) for s in similar}},
        "training": {v: _training(workdir, v) for v in versions},
        "tuning": tuning,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "overrides": overrides,
    }


def markdown(results: list[dict]) -> str:
    """README table: both LSTM rows, the baselines and the anchors per dataset."""
    lines = ["| dataset (protocol) | system | HR@10 | NDCG@10 | MRR@10 | HR@20 | NDCG@20 | MRR@20 |",
             "|---|---|---|---|---|---|---|---|"]
    cell = lambda m, k: f"{m[k]:.4f}" if k in m else ""  # noqa: E731
    for r in results:
        label = f"{r['dataset']} ({r['protocol']}, {r['n_queries']} queries)"
        rows = []
        if "defaults" not in r["lstm"]:  # a dataset last measured before the two-row table
            r = {**r, "lstm": {"earlier": r["lstm"]}, "training": {"earlier": r["training"]}}
        for variant, metrics in r["lstm"].items():
            t = r["training"]["earlier" if variant == "earlier" else _version(variant)]
            if variant == "tuned":
                how = (f"recsys tune: {r['tuning']['trials']} trials ({r['tuning']['pruned']} pruned) in "
                       f"{r['tuning']['seconds']:.0f} s")
            else:
                how = {"defaults": "shipped defaults", "earlier": "settings set by hand (earlier run)"}.get(
                    variant) or SETUPS[variant][0].replace("<dataset>", r["dataset"])
            procs = "" if variant in SETUPS else ", 2 Horovod procs"
            rows.append((f"**LSTM, {how}** ({t['epochs_run']} epochs, {t['train_seconds_per_epoch']} s/epoch, "
                         f"{t['positions_per_second']} pos/s{procs})", metrics))
        rows += [(name, m) for name, m in r["baselines"].items()]
        rows += [(f"{name} [ANCHORS]", m) for name, m in r["anchors"].items()]
        for system, m in rows:
            lines.append(f"| {label} | {system} | " + " | ".join(cell(m, k) for k in
                         ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20")) + " |")
            label = ""
    return "\n".join(lines) + "\n"


def merged(previous: dict, results: list[dict], when: str) -> dict:
    """The new results over the previous file's: a re-measured dataset's old entry moves to history."""
    by_name = {r["dataset"]: r for r in previous.get("results", [])}
    history = list(previous.get("history", []))
    for r in results:
        if r["dataset"] in by_name:
            history.append({"replaced_on": when, **by_name[r["dataset"]]})
        by_name[r["dataset"]] = r
    order = [n for n in DATASETS if n in by_name]
    return {"machine": "2 cores", "results": [by_name[n] for n in order], "history": history}


SIMILAR_LABELS = {"model": "LSTM, the shipped similar.rule (**blend**)", "model_next": "LSTM next-item after the one item",
                  "model_cosine": "LSTM embedding cosine", "model_blend": "LSTM blend (log-softmax next + cosine)",
                  "transitions": "last-item transitions",
                  "als": "ALS item-factor cosine"}


def similar_markdown(results: list[dict]) -> str:
    """README table of the item_to_item protocol: the model's rules next to transitions and ALS."""
    lines = ["| dataset (queries) | similar-items list | HR@10 | NDCG@10 | MRR@10 | HR@20 | NDCG@20 | MRR@20 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in (r for r in results if "item_to_item" in r):
        label = f"{r['dataset']} ({r['item_to_item']['n_queries']})"
        for name, m in r["item_to_item"]["systems"].items():
            lines.append(f"| {label} | {SIMILAR_LABELS.get(name, name)} | " + " | ".join(
                f"{m[k]:.4f}" for k in REPORTED) + " |")
            label = ""
    return "\n".join(lines) + "\n"


def unrecorded(datasets: list[str]) -> list[str]:
    """The datasets without a ``benchmarks/settings/<dataset>.yaml`` for ``--setups recorded``."""
    return [d for d in datasets if not (RECORDED / f"{d}.yaml").is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra config override for every job, e.g. train.epochs=5")
    parser.add_argument("--tune-trials", type=int, default=8,
                        help="recsys tune's trial budget per dataset (0: no tuned row)")
    parser.add_argument("--tune-timeout", type=int, default=1200,
                        help="recsys tune's time budget per dataset, seconds")
    parser.add_argument("--setups", nargs="*", default=[], choices=list(SETUPS),
                        help="also train the shipped defaults (or the tuned settings) these other ways (speed rows)")
    parser.add_argument("--out", default=str(RESULTS / "real_data_lstm.json"))
    args = parser.parse_args(argv)
    if not args.tune_trials and any(SETUPS[setup][2] == "tuned" for setup in args.setups):
        parser.error("a set-up of the tuned settings needs --tune-trials > 0")
    if "recorded" in args.setups and (missing := unrecorded(args.datasets)):
        parser.error(f"--setups recorded: no settings recorded for {', '.join(missing)} in {RECORDED}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = []
    for name in args.datasets:
        with tempfile.TemporaryDirectory(prefix=f"recsys-lstm-{name}-") as tmp:
            log.info("%s: running the jobs in %s", name, tmp)
            results.append(run_dataset(name, Path(tmp), args.overrides, args.tune_trials, args.tune_timeout,
                                       tuple(args.setups)))
            log.info("%s: LSTM %s; baselines %s", name, results[-1]["lstm"], results[-1]["baselines"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    combined = merged(previous, results, time.strftime("%Y-%m-%d"))
    out.write_text(json.dumps(combined, indent=2))
    out.with_suffix(".md").write_text(markdown(combined["results"]) + "\n" + similar_markdown(combined["results"]))
    print(markdown(results) + "\n" + similar_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
