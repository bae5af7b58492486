"""Live refresh (``recsys stream``) on real processes: a small night is built and published, then new
event files land while real Structured Streaming queries run, are killed and restarted, and a new night
is published under a running stream. What the stream published is compared with what the nightly batch
scorer gives for the same histories (computed by tests/scripts/live_driver.py from the events this
test wrote, not from the stream's own tables).

The phases share one warehouse (embedded Derby: one JVM at a time) and run once, in the module fixture;
each test asserts on one phase.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from _nightly import SETTINGS, assert_quiet_log
from _readme import Block, readme_blocks
from recsys_spark.emit import night_population, write_event_file
from recsys_spark.published import read_live_record

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
NIGHT, NEXT = "2026-11-25", "2026-11-26"
UNSEEN_ITEM, NEW_USER = "zz-unseen-item", "live-new-user"
INVALID = [  # (row, the reason the stream must quarantine it with)
    ({"user_id": "u1", "item_id": "i1", "event_type": "teleport", "ts": "2026-11-26T10:00:00+00:00"}, "unknown_event_type"),
    ({"user_id": "", "item_id": "i1", "event_type": "view", "ts": "2026-11-26T10:00:00+00:00"}, "missing_user_id"),
    ({"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "yesterday-ish"}, "unparsable_timestamp"),
    ({"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2099-01-01T00:00:00+00:00"}, "future_timestamp"),
]
MALFORMED_LINE = "{this is not json"


def readme_block(test_name: str) -> Block:
    return next(b for b in readme_blocks("covered-by") if any(a.endswith("::" + test_name) for a in b.args))


def settings(*extra: str) -> list[str]:
    out = ["--conf", "local"]
    for setting in [*SETTINGS, *extra]:
        out += ["--set", setting]
    return out


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "recsys_spark.cli", *args]


def run(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(command(*args), cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"recsys {' '.join(args[:2])} exited {done.returncode}:\n{done.stderr[-5000:]}"
    return done


def driver(workdir: Path, mode: str, events: list[dict], extra: dict | None = None) -> dict:
    (workdir / "events.json").write_text(json.dumps(events))
    args = {"conf": "local", "overrides": list(SETTINGS), **(extra or {})}
    (workdir / "driver-args.json").write_text(json.dumps(args))
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "live_driver.py"), mode,
                           "events.json", f"{mode}.json", "driver-args.json"], cwd=workdir, capture_output=True,
                          text=True, timeout=1200, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"live_driver {mode} exited {done.returncode}:\n{done.stderr[-6000:]}"
    events[:] = json.loads((workdir / "events.json").read_text())
    return {**json.loads((workdir / f"{mode}.json").read_text()), "log": done.stderr}


def event(user: str, item: str, ts: dt.datetime, event_type: str = "view") -> dict:
    return {"user_id": user, "item_id": item, "event_type": event_type, "ts": ts.isoformat(timespec="milliseconds"),
            "session_id": None}


def random_events(rng: np.random.Generator, users, items, n: int, days: tuple[str, ...]) -> list[dict]:
    """Valid events of a few users on ``days``, in shuffled order (late and out of order), with
    repeats, the odd unseen item, and ties on the timestamp."""
    out = []
    for _ in range(n):
        day = dt.datetime.fromisoformat(rng.choice(days)).replace(tzinfo=dt.timezone.utc)
        ts = day + dt.timedelta(seconds=int(rng.integers(0, 3)) * 3600)  # few distinct times: ties
        item = UNSEEN_ITEM if rng.random() < 0.05 else str(rng.choice(items))
        out.append(event(str(rng.choice(users)), item, ts))
    return out


def partial_views(live_root: Path) -> list[str]:
    """What a reader of the live record could see that it must not: a listed micro-batch directory
    that is not complete (no _SUCCESS) or holds a user twice."""
    record = read_live_record(live_root)
    problems = []
    for location in (record or {}).get("locations", []):
        path = Path(location.removeprefix("file:"))
        if not (path / "_SUCCESS").exists():
            problems.append(f"{location}: listed but incomplete (record of batch {record.get('batch')}: "
                            f"{record['locations']})")
            continue
        users = pads.dataset(str(path), format="parquet").to_table(columns=["user_id"]).column("user_id").to_pylist()
        if len(users) != len(set(users)):
            problems.append(f"{location}: a user twice")
    return problems


class Poller(threading.Thread):
    """A reader polling the live record and its directories every 0.1 s while the stream runs."""

    def __init__(self, var: Path):
        super().__init__(daemon=True)
        self.var, self.polls, self.problems, self.stop = var, 0, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.problems += partial_views(self.var)
            except OSError:  # a directory deleted (a compaction later) between reading the record and it
                pass
            self.polls += 1
            time.sleep(0.1)


def checkpoint_batches(var: Path) -> tuple[set[int], set[int]]:
    """(offsets written, commits written) of the stream's checkpoint: a batch with an offset and no
    commit was in flight."""
    checkpoint = var / "stream" / "checkpoint"
    ids = lambda d: {int(p.name) for p in (checkpoint / d).glob("[0-9]*") if p.name.isdigit()}  # noqa: E731
    return ids("offsets"), ids("commits")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("live")
    var, landing = work / "var", work / "var" / "landing"
    out: dict = {"work": work}
    # Night NEXT gets no synthetic events: its partition is what the stream appends (see phase 5).
    run(work, "nightly", "--ds", NIGHT, *settings())
    record = json.loads(next((var / "published" / "recommendations").glob("ds=*.json")).read_text())
    users, items, _ = night_population(record["location"])
    events: list[dict] = []

    # 1. The README's loop, its commands as written there.
    outputs = [run(work, *shlex.split(line.removeprefix(".venv/bin/recsys ")), *settings())
               for line in readme_block("test_the_readme_loop_changes_the_users_list_after_a_few_clicks").prompt_lines]
    out["nightly_list"], out["readme_stream"], out["live_list"] = outputs[0].stdout, outputs[2], outputs[3].stdout
    for path in landing.glob("clicks-u0-*.json"):
        events += [{**json.loads(line), "valid": True} for line in path.read_text().splitlines()]

    # 2. Random traffic in 10 files: 8 known users and one new, late and out-of-order events, events
    #    before the night's cut-off, invalid rows and a line that is no JSON at all.
    rng = np.random.default_rng(5)
    chosen = [str(u) for u in rng.choice(users, 8, replace=False)] + [NEW_USER]
    traffic = random_events(rng, chosen, items, 120, (NIGHT + "T20:00:00", NEXT + "T08:00:00", "2026-11-27T08:00:00"))
    def write_traffic(files: range) -> None:
        for i in files:
            chunk = traffic[i::10] + ([INVALID[i % len(INVALID)][0]] if i < 8 else [])
            write_event_file(landing, chunk, f"traffic-{i:02d}")
            events.extend({**e, "valid": i >= 8 or e is not chunk[-1]} for e in chunk)

    out["expected_rejects"] = {reason: 2 for _, reason in INVALID} | {"malformed_record": 1}

    # 3. A long-running stream, one file per micro-batch: SIGTERM after two micro-batches (it must
    #    finish and exit 0), then again, SIGKILL while a micro-batch is in flight, then --once.
    # compact_every=3: compactions (and the deletes one compaction later) happen under the readers too.
    one_file = settings("stream.max_files_per_trigger=1", "stream.trigger_seconds=0.2", "stream.compact_every=3")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    write_traffic(range(0, 4))
    log = open(work / "stream-term.log", "w")
    stream = subprocess.Popen(command("stream", *one_file), cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 600
    while len(checkpoint_batches(var)[1]) < 3 and time.time() < deadline:
        time.sleep(0.2)
    stream.send_signal(signal.SIGTERM)
    out["sigterm_exit"] = stream.wait(timeout=180)
    out["sigterm_log"] = (work / "stream-term.log").read_text()

    write_traffic(range(4, 10))
    with (landing / "traffic-10.json").open("w") as f:
        f.write(MALFORMED_LINE + "\n")
    poller = Poller(var)
    poller.start()
    log = open(work / "stream-kill.log", "w")
    stream = subprocess.Popen(command("stream", *one_file), cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    committed_at_start = len(checkpoint_batches(var)[1])
    deadline = time.time() + 600
    in_flight: set[int] = set()
    while time.time() < deadline:
        offsets, commits = checkpoint_batches(var)
        in_flight = offsets - commits
        if len(commits) >= committed_at_start + 2 and in_flight:
            time.sleep(0.5)  # well inside the micro-batch (they take seconds)
            offsets, commits = checkpoint_batches(var)
            in_flight = offsets - commits
            if in_flight:
                break
        time.sleep(0.05)
    os.killpg(stream.pid, signal.SIGKILL)
    stream.wait(timeout=60)
    out["killed_in_flight"] = sorted(in_flight)
    out["restart"] = run(work, "stream", "--once", *settings())
    poller.stop.set()
    poller.join()
    out["poller"] = {"polls": poller.polls, "problems": poller.problems}
    out["left_unprocessed"] = sorted(set(range(max(checkpoint_batches(var)[0]) + 1)) - checkpoint_batches(var)[1])

    # 4. What the stream published vs the batch scorer, and the exactly-once accounting.
    out["verify"] = driver(work, "verify", events, {"sql": readme_block(
        "test_the_readme_live_query_returns_the_views_rows").text})
    out["verified_events"] = list(events)

    # 5. A new night published while a stream runs (same process: one Derby JVM).
    before = [event(u, str(rng.choice(items)), dt.datetime(2026, 11, 27, 12, tzinfo=dt.timezone.utc))
              for u in chosen[:3]]
    after = [event(u, str(rng.choice(items)), dt.datetime(2026, 11, 27, 13, tzinfo=dt.timezone.utc))
             for u in chosen[2:5]]
    out["rebase"] = driver(work, "rebase", events, {
        "night": NEXT, "overrides": [*SETTINGS, "score.gate_tolerance=1.0", "stream.trigger_seconds=0.5"],
        "before": [{**e, "valid": True} for e in before], "after": [{**e, "valid": True} for e in after]})
    out["events"] = events
    return out


def mismatches(observed: dict, reference: dict, counts: dict) -> list[str]:
    """Users whose live row differs from the batch scorer's on the reference history."""
    problems = []
    for user, expected in reference.items():
        got = observed.get(user)
        if got is None:
            problems.append(f"{user}: no live row")
            continue
        if [r[1] for r in got["recs"]] != [r[1] for r in expected["recs"]]:
            problems.append(f"{user}: items {[r[1] for r in got['recs']]} != {[r[1] for r in expected['recs']]}")
        if not np.allclose([r[2] for r in got["recs"]], [r[2] for r in expected["recs"]], rtol=0, atol=1e-5):
            problems.append(f"{user}: scores differ")
        if (got["source"], got["model_version"]) != (expected["source"], expected["model_version"]):
            problems.append(f"{user}: source/model {got['source']}/{got['model_version']}")
        if got["events_folded"] != counts[user]:
            problems.append(f"{user}: {got['events_folded']} events folded, expected {counts[user]}")
    return problems


def check_against_batch(result: dict) -> list[str]:
    return mismatches(result["lists"], result["reference"], result["reference_counts"]) + [
        f"{u}: history {result['histories'].get(u)} != {h}" for u, h in result["reference_histories"].items()
        if result["histories"].get(u) != h]


def test_the_readme_loop_changes_the_users_list_after_a_few_clicks(world):
    assert "user u0, night 2026-11-25" in world["nightly_list"]
    live = world["live_list"]
    assert f"user u0, live since night {NIGHT} (3 events folded" in live, live
    nightly_items = [line.split()[1] for line in world["nightly_list"].splitlines()[1:]]
    live_items = [line.split()[1] for line in live.splitlines()[1:]]
    assert len(live_items) == len(nightly_items) == 10 and live_items != nightly_items
    assert_quiet_log(world["readme_stream"].stderr)


def test_live_lists_equal_the_batch_scorer_on_the_nights_history_plus_the_new_events(world):
    result = world["verify"]
    assert len(result["reference"]) >= 9  # u0, 8 random users, the new user
    assert NEW_USER in result["reference"] and result["reference_histories"][NEW_USER]
    assert check_against_batch(result) == []


def test_the_comparison_catches_a_wrong_list_a_wrong_count_and_a_wrong_history(world):
    result = json.loads(json.dumps(world["verify"]))
    user = sorted(result["reference"])[0]
    recs = result["lists"][user]["recs"]
    recs[0][1], recs[1][1] = recs[1][1], recs[0][1]
    result["lists"][sorted(result["reference"])[1]]["events_folded"] += 1
    result["histories"][sorted(result["reference"])[2]].append(1)
    assert len(check_against_batch(result)) == 3


def test_every_accepted_event_lands_in_events_once_and_every_reject_is_counted(world):
    result = world["verify"]
    stamp = lambda ts: dt.datetime.fromisoformat(ts).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]  # noqa: E731
    expected = sorted([e["user_id"], e["item_id"], e["event_type"], stamp(e["ts"])]
                      for e in world["verified_events"] if e["valid"])
    assert result["stream_events"] == expected
    assert result["rejected"] == world["expected_rejects"]
    assert set(result["view_rows_per_user"].values()) == {1}
    assert result["view_total_rows"] == result["view_distinct_users"]


def test_sigterm_lets_the_micro_batch_finish_and_exits_cleanly(world):
    assert world["sigterm_exit"] == 0, world["sigterm_log"][-3000:]
    assert "stop requested" in world["sigterm_log"] and "stream stopped after micro-batch" in world["sigterm_log"]
    assert "Traceback" not in world["sigterm_log"]


def test_a_sigkill_inside_a_micro_batch_loses_nothing_and_shows_readers_no_partial_batch(world):
    assert world["killed_in_flight"], "the kill did not land inside a micro-batch"
    assert world["left_unprocessed"] == []
    assert world["poller"]["polls"] > 20 and world["poller"]["problems"] == []
    # Exactly once across the kill: covered by the equality with the batch scorer and the events count.
    assert check_against_batch(world["verify"]) == []


def test_the_partial_view_check_sees_an_incomplete_or_duplicated_batch(tmp_path, world):
    import shutil

    from recsys_spark.published import write_live_record
    good = Path(read_live_record(world["work"] / "var")["locations"][-1].removeprefix("file:"))
    incomplete, twice = tmp_path / "incomplete", tmp_path / "twice"
    shutil.copytree(good, incomplete)
    (incomplete / "_SUCCESS").unlink()
    shutil.copytree(good, twice)
    part = next(twice.glob("*.parquet"))
    shutil.copy(part, twice / ("copy-" + part.name))
    write_live_record(tmp_path, {"locations": [str(good), str(incomplete), str(twice)]})
    assert [p.split(": ")[1].split(" (")[0] for p in partial_views(tmp_path)] == ["listed but incomplete", "a user twice"]


def test_a_new_night_is_picked_up_at_a_micro_batch_boundary_without_a_restart(world):
    result = world["rebase"]
    assert result["old_base"][0] == NIGHT and result["new_base"][0] == NEXT
    assert result["new_base"][1] != result["old_base"][1], "the new night's model did not become production"
    assert [b["base_ds"] for b in result["rebase_batches"]][-1] == NEXT
    assert result["base"] == result["new_base"]
    # Events before the new night's cut-off are in its user_state: only the later ones count as folded.
    assert check_against_batch(result) == []
    assert {row["ds"] for row in result["lists"].values()} == {NEXT}
    assert "Traceback" not in result["log"]


def test_the_readme_live_query_returns_the_views_rows(world):
    rows = world["verify"]["readme_query"]
    live = world["verify"]["lists"]["u0"]
    assert [r[1] for r in rows] == [r[1] for r in live["recs"]] and [r[0] for r in rows] == list(range(1, 11))
    assert {r[2] for r in rows} == {live["events_folded"]} == {3}
