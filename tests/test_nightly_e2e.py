"""End to end: ``jobs.nightly.main`` on tiny synthetic data, two consecutive nights, then a backfill of the
same two nights in a fresh warehouse (tests/_nightly.py, built once per session), their logs, publish
records, and the report notebook executed against the result.

Each warehouse runs in its own process (tests/scripts/nightly_runs.py): the embedded Derby metastore admits
one process, and a Spark driver's warehouse/metastore cannot change once the test session has one. Both
runs use the same *relative* storage paths from their own working directory, so their resolved configs,
model hashes and hence model versions (``<ds>-<model hash>``) are identical, and the two processes run
at the same time to halve the wall clock.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _nightly import K, NIGHTS, SIMILAR_K, assert_quiet_log

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent

STAGES = ["events", "build_sequences", "train", "evaluate", "gate", "score", "similar_items"]


@pytest.fixture(scope="module")
def runs(nightly_runs):
    return nightly_runs


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


def test_each_night_publishes_similar_items_for_every_item(runs):
    """similar_items: one row per vocabulary item, k distinct other items, ranks 1..k, scores
    non-increasing, from the model that scored the night; the partition is what the stage recorded,
    and the night's item_to_item evaluation is in the manifest."""
    run = runs["nightly"]
    for ds in NIGHTS:
        rows = [r for r in run.published["similar"] if r["ds"] == ds]
        stage = run.stage(ds, "similar_items")["details"]
        assert sorted(r["item_id"] for r in rows) == sorted(run.item_index(ds)["item_id"])
        assert len(rows) == stage["rows"] and stage["rule"] == "blend"
        assert {r["model_version"] for r in rows} == {stage["model_version"]} == {run.stage(ds, "score")["details"]["model_version"]}
        for row in rows:
            items = row["similar"]
            assert [r[0] for r in items] == list(range(1, SIMILAR_K + 1))
            assert len({r[1] for r in items}) == SIMILAR_K and row["item_id"] not in {r[1] for r in items}
            assert all(a[2] >= b[2] for a, b in zip(items, items[1:]))
        assert run.published["similar_locations"][ds].rstrip("/") == stage["location"].rstrip("/")
        record = json.loads((run.var / "published" / "similar_items" / f"ds={ds}.json").read_text())
        assert (record["location"], record["rows"]) == (stage["location"], stage["rows"])
        metrics = run.stage(ds, "evaluate")["details"]["metrics"]
        assert {"transitions/item_to_item/test", f"{run.stage(ds, 'train')['details']['model_version']}/item_to_item/test"} \
            <= set(metrics)


def test_a_healthy_night_logs_no_traceback_and_no_noise(runs):
    for run in runs.values():
        assert_quiet_log((run.workdir / "run.log").read_text())


@pytest.mark.parametrize("noise", [
    "INFO root: Exception while sending command.\nTraceback (most recent call last):\n  File \"x.py\"",
    "INFO root: scope global has keys ['rank_0']",
    "[0]<stderr>:[0]<stderr>:epoch 1/12:   0%|          | 0/40",
    "epoch 1/12:  10%|#         | 4/40\repoch 1/12:  20%|##        | 8/40",
])
def test_the_quiet_log_check_catches_noise(noise):
    with pytest.raises(AssertionError):
        assert_quiet_log("INFO recsys: fine\n" + noise + "\nINFO recsys: fine\n")


def test_publish_records_name_what_the_metastore_serves(runs):
    """``recsys recommend`` reads the publish record instead of the metastore: after every score run
    it must name the partition's location, row count and model."""
    for run in runs.values():
        for ds in NIGHTS:
            record = json.loads((run.var / "published" / "recommendations" / f"ds={ds}.json").read_text())
            score = run.stage(ds, "score")["details"]
            assert record["location"] == score["location"]
            assert record["location"].rstrip("/") == run.published["locations"][ds].rstrip("/")
            assert (record["ds"], record["rows"], record["model_version"]) == \
                (ds, score["rows"], score["model_version"])


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
