"""End to end: ``jobs.nightly.main`` on tiny synthetic data, two consecutive nights, then a backfill of the
same two nights in a fresh warehouse, and the report notebook executed against the result.

Each warehouse runs in its own process (tests/scripts/nightly_runs.py): the embedded Derby metastore admits
one process, and a Spark driver's warehouse/metastore cannot change once the test session has one. Both
runs use the same *relative* storage paths from their own working directory, so their resolved configs,
model hashes and hence model versions (``<ds>-<model hash>``) are identical, and the two processes run
at the same time to halve the wall clock.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
NIGHTS = ("2026-11-25", "2026-11-26")
STAGES = ["events", "build_sequences", "train", "evaluate", "gate", "score"]
K = 10
# Tiny and single-process. train.epochs=3, not 1: after one epoch the first night's candidate loses to
# the most_popular bootstrap baseline, the gate refuses, and with no production model there is nothing
# to score; 3 epochs cost ~1 s more. sequences.stride must not exceed the window length.
SETTINGS = [
    "spark.master=local[2]",
    "spark.conf={spark.sql.shuffle.partitions: '2', spark.default.parallelism: '2', "
    "spark.ui.enabled: 'false', spark.driver.memory: 2g}",
    "synthetic.events_per_day=1500", "synthetic.n_users=200", "synthetic.n_items=150", "synthetic.days=4",
    "sequences.window_length=10", "sequences.stride=10", "sequences.num_negatives=5",
    "train.epochs=3", "train.num_proc=1", "train.backend=single",
    "evaluate.baselines=[most_popular,transitions]", f"score.k={K}",
]


def nightly_argv(*night_args: str) -> list[str]:
    argv = [*night_args, "--conf", "local"]  # local.yaml: warehouse, metastore, artifacts under ./var
    for setting in SETTINGS:
        argv += ["--set", setting]
    return argv


def start(workdir: Path, runs: list[list[str]]) -> subprocess.Popen:
    workdir.mkdir(parents=True)
    log = open(workdir / "run.log", "w")
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "scripts" / "nightly_runs.py"), json.dumps(runs)],
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def finish(process: subprocess.Popen, workdir: Path) -> None:
    code = process.wait(timeout=900)
    assert code == 0, f"nightly runs in {workdir} exited {code}:\n" + (workdir / "run.log").read_text()[-6000:]


class Run:
    """What one warehouse holds after its nights: manifests, registry, published rows."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.var = workdir / "var"
        self.published = json.loads((workdir / "published.json").read_text())
        self.manifests = {ds: json.loads((self.var / "runs" / f"ds={ds}" / "manifest.json").read_text())
                          for ds in NIGHTS}
        self.registry = json.loads((self.var / "models" / "registry.json").read_text())

    def recommendations(self, ds: str) -> pd.DataFrame:
        return pd.DataFrame([r for r in self.published["rows"] if r["ds"] == ds])

    def stage(self, ds: str, name: str) -> dict:
        return next(s for s in self.manifests[ds]["stages"] if s["name"] == name)

    def item_index(self, ds: str) -> pd.DataFrame:
        return pd.read_parquet(self.var / "warehouse" / "recsys.db" / "item_index" / f"version={ds}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("nightly_e2e")
    nightly = start(base / "nightly", [nightly_argv("--ds", NIGHTS[0]), nightly_argv("--ds", NIGHTS[1])])
    backfill = start(base / "backfill", [nightly_argv("--start", NIGHTS[0], "--end", NIGHTS[1])])
    finish(nightly, base / "nightly")
    finish(backfill, base / "backfill")
    return {"nightly": Run(base / "nightly"), "backfill": Run(base / "backfill")}


def test_each_night_publishes_one_row_per_user(runs):
    run = runs["nightly"]
    for ds in NIGHTS:
        recs = run.recommendations(ds)
        score = run.stage(ds, "score")["details"]
        assert recs["user_id"].is_unique and len(recs) == score["rows"] > 0
        # every user of the night's sequences is served, by the model or the popularity fallback
        assert len(recs) == run.stage(ds, "build_sequences")["details"]["users"]
        assert set(recs["source"]) <= {"model", "fallback"}
        assert (recs["model_version"] == score["model_version"]).all()
        for items in recs["recs"]:
            assert [r[0] for r in items] == list(range(1, K + 1))
            assert len({r[1] for r in items}) == K
            assert all(a[2] >= b[2] for a, b in zip(items, items[1:]))
        # the metastore partition points at the run directory the manifest recorded
        assert run.published["locations"][ds].rstrip("/") == score["location"].rstrip("/")


def test_manifests_record_stages_versions_and_the_gate(runs):
    run = runs["nightly"]
    hashes = {m["model_hash"] for m in run.manifests.values()}
    assert len(hashes) == 1
    (model_hash,) = hashes
    production = None
    for ds in NIGHTS:
        manifest = run.manifests[ds]
        assert [s["name"] for s in manifest["stages"]] == STAGES
        assert all(s["status"] == "ok" for s in manifest["stages"])
        candidate = f"{ds}-{model_hash}"
        assert run.stage(ds, "train")["details"]["model_version"] == candidate
        gate = run.stage(ds, "gate")["details"]
        assert manifest["outcome"]["candidate"] == candidate
        assert manifest["outcome"]["gate_approved"] == gate["approved"]
        if gate["approved"]:
            production = candidate
        assert gate["production"] == manifest["outcome"]["model_version"] == production
        assert run.stage(ds, "score")["details"]["model_version"] == production
    assert run.stage(NIGHTS[0], "gate")["details"]["reference"] == "most_popular"  # bootstrap night
    assert run.stage(NIGHTS[0], "events")["details"]["generated_nights"] == 4
    assert run.stage(NIGHTS[1], "events")["details"]["generated_nights"] == 1
    assert run.registry["production"] == production
    assert set(run.registry["versions"]) == {f"{ds}-{model_hash}" for ds in NIGHTS}


def test_second_night_keeps_the_vocabulary_and_adds_items_and_users(runs):
    run = runs["nightly"]
    first, second = (run.item_index(ds).set_index("item_id")["item_idx"] for ds in NIGHTS)
    assert (second.loc[first.index] == first).all()  # every item keeps its index
    added = second.drop(first.index)
    assert len(added) > 0 and added.min() > first.max()  # new items are appended
    assert run.stage(NIGHTS[1], "build_sequences")["details"]["new_items"] == len(added)
    users = [set(run.recommendations(ds)["user_id"]) for ds in NIGHTS]
    assert users[1] - users[0]  # the second night serves users the first did not know


def test_backfill_equals_single_nights(runs):
    single, backfill = runs["nightly"], runs["backfill"]
    for ds in NIGHTS:
        assert backfill.manifests[ds]["config_hash"] == single.manifests[ds]["config_hash"]
        assert backfill.manifests[ds]["outcome"] == single.manifests[ds]["outcome"]
        a, b = single.recommendations(ds), backfill.recommendations(ds)
        assert len(a) == len(b)
        merged = a.merge(b, on=["ds", "user_id"], suffixes=("_single", "_backfill"), validate="1:1")
        assert len(merged) == len(a)
        assert (merged["source_single"] == merged["source_backfill"]).all()
        assert (merged["model_version_single"] == merged["model_version_backfill"]).all()
        for x, y in zip(merged["recs_single"], merged["recs_backfill"]):
            assert [r[:2] for r in x] == [r[:2] for r in y]
            assert [r[2] for r in x] == pytest.approx([r[2] for r in y], rel=1e-5, abs=1e-6)
    assert backfill.registry["production"] == single.registry["production"]
    assert set(backfill.registry["versions"]) == set(single.registry["versions"])


def test_report_notebook_executes_against_the_run(runs, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    run = runs["nightly"]
    # Titles the way a MovieLens run would look them up: u.item lines 'id|title|...', here for the
    # synthetic item ids so the join is exercised.
    items = run.item_index(NIGHTS[1])["item_id"]
    (tmp_path / "u.item").write_text("".join(f"{i}|Title of {i} (1995)|01-Jan-1995||http://x|0\n" for i in items),
                                     encoding="latin-1")
    notebook = nbformat.read(ROOT / "notebooks" / "nightly_report.ipynb", as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source += (f"\nSTORAGE_ROOT = {str(run.var)!r}\nWAREHOUSE = {str(run.var / 'warehouse')!r}\n"
                          f"MOVIELENS_ITEMS = {str(tmp_path / 'u.item')!r}\n")
    nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))
    assert f"Night {NIGHTS[1]}" in "".join(str(o.get("data", {}).get("text/markdown", ""))
                                           for c in notebook.cells for o in c.get("outputs", []))
    assert "most_popular" in text and "transitions" in text and run.registry["production"] in text
    assert "Title of " in text
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the sequence-length histogram and the production training curve
