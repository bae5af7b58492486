"""Bad nights and bad models: an empty or abnormally small night fails loudly without publishing; a
regressed or incomplete candidate is never promoted; rollback is one command the next score uses."""
import datetime as dt

import pytest

from _world import MODEL_A, MODEL_B, NIGHT1, NIGHT2, job, rcs

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SMALL_NIGHT, EMPTY_NIGHT = "2026-11-21", "2026-11-22"


def _tiny_night(ds: str) -> list[list]:
    """40 users x 6 events on 20 items: valid, but under a tenth of a normal night's users."""
    noon = dt.datetime.fromisoformat(ds) + dt.timedelta(hours=12)
    return [[f"u{u}", f"i{(u + 3 * k) % 20}", "view", (noon + dt.timedelta(minutes=k)).isoformat(), ds]
            for u in range(40) for k in range(6)]


def test_empty_or_abnormally_small_night_fails_loudly_and_publishes_nothing(world):
    """A night with a fourteenth of the users is refused by the score row-count band; a night with no
    events is refused by build (not built from the earlier nights); neither gets a partition."""
    result = world.plan([
        {"events": _tiny_night(SMALL_NIGHT), "ds": [SMALL_NIGHT]},
        job("build_sequences", "--ds", SMALL_NIGHT, "--set", "sequences.lookback_days=1"),
        job("score", "--ds", SMALL_NIGHT),
        job("build_sequences", "--ds", EMPTY_NIGHT),
        {"snapshot": "after"},
    ])
    assert rcs(result) == [0, 3, 3], result["log"][-3000:]
    assert "outside the configured band [0.5, 2.0] (score.row_count_band)" in result["log"]
    assert f"no events for night {EMPTY_NIGHT} in recsys.events" in result["log"]
    after = result["after"]
    assert set(after["tables"]["recommendations"]) == set(world.baseline["tables"]["recommendations"])
    assert after["tables"]["recommendations"][NIGHT2] == world.baseline["tables"]["recommendations"][NIGHT2]
    assert EMPTY_NIGHT not in after["tables"]["user_sequences"]


def _metrics(version, ndcg, hr=None):
    rows = [[version, "model", "ndcg", 10, ndcg]]
    return rows + ([[version, "model", "hr", 10, hr]] if hr is not None else [])


def test_bad_candidates_are_refused_and_rollback_is_one_command(world):
    """The gate refuses a regressed candidate and one missing a metric (production unchanged); an
    approved one serves the next score; `recsys rollback` restores the previous model for the
    next score run."""
    gate = job("gate", "--ds", NIGHT1, "--model-version", MODEL_B)
    first = world.plan([
        {"metrics": _metrics(MODEL_A, 0.30, 0.50) + _metrics(MODEL_B, 0.10, 0.50), "ds": NIGHT1},
        gate, {"snapshot": "regressed"},
        {"metrics": _metrics(MODEL_B, 0.31), "ds": NIGHT1},
        gate, {"snapshot": "missing"},
        {"metrics": _metrics(MODEL_B, 0.31, 0.52), "ds": NIGHT1},
        gate, job("score", "--ds", NIGHT2), {"snapshot": "promoted"},
    ])
    assert rcs(first) == [4, 4, 0, 0], first["log"][-3000:]
    assert "ndcg@10 0.1000 is below" in first["log"] and "candidate has no hr@10 (fail closed)" in first["log"]
    assert first["regressed"]["production"] == first["missing"]["production"] == MODEL_A
    assert first["promoted"]["model_versions"][NIGHT2] == [MODEL_B]

    rollback = world.command("rollback")
    output, _ = rollback.communicate(timeout=60)
    assert rollback.returncode == 0 and f"production: {MODEL_B} -> {MODEL_A}" in output, output[-2000:]

    second = world.plan([job("score", "--ds", NIGHT2), {"snapshot": "rolled_back"}])
    assert rcs(second) == [0]
    assert second["rolled_back"]["production"] == MODEL_A
    assert second["rolled_back"]["tables"]["recommendations"] == world.baseline["tables"]["recommendations"]
