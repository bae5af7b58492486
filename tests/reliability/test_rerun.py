"""Re-runs: every stage re-run for a night reproduces its outputs and leaves other nights alone, and
the outputs do not depend on the wall clock, the time zone, input file order or partition counts."""
import pytest

from _world import MODEL_A, NIGHT1, NIGHT2, job, rcs

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

RERUN_NIGHT2 = [
    job("build_sequences", "--ds", NIGHT2),
    job("train", "--ds", NIGHT1, "--model-version", MODEL_A),
    job("evaluate", "--ds", NIGHT2, "--model-version", MODEL_A),
    job("score", "--ds", NIGHT2),
]


def _night2_outputs(snapshot):
    return {"user_sequences": snapshot["tables"]["user_sequences"][NIGHT2],
            "item_index": snapshot["tables"]["item_index"][NIGHT2],
            "dataset": snapshot["datasets"][f"ds={NIGHT2}"],
            "recommendations": snapshot["tables"]["recommendations"][NIGHT2]}


def test_rerunning_every_stage_reproduces_the_night_and_touches_no_other(world):
    """Re-running build, train, evaluate and score for a night gives identical tables, Parquet
    datasets and model weights (same seed: bitwise), and no other night's data changes."""
    result = world.plan([{"snapshot": "before"}, *RERUN_NIGHT2, {"snapshot": "after"}])
    assert rcs(result) == [0, 0, 0, 0], result["log"][-3000:]
    before, after = result["before"], result["after"]
    assert after["locations"][NIGHT2] != before["locations"][NIGHT2]  # score really re-published
    for key in ("tables", "datasets", "models", "production"):
        assert after[key] == before[key], key
    assert after["locations"][NIGHT1] == before["locations"][NIGHT1]


def test_output_ignores_clock_time_zone_file_order_and_partitioning(world):
    """Building and scoring a night under another TZ, at another time, with its input files
    rewritten in another order and other partition counts gives the same rows."""
    result = world.plan(
        [{"shuffle_events": NIGHT2, "files": 5}, job("build_sequences", "--ds", NIGHT2),
         job("score", "--ds", NIGHT2), {"snapshot": "after"}],
        overrides=["spark.conf={spark.sql.shuffle.partitions: '3', spark.default.parallelism: '3', "
                   "spark.driver.memory: 1g}", "score.partitions=3"],
        extra_env={"TZ": "Pacific/Kiritimati"})
    assert rcs(result) == [0, 0], result["log"][-3000:]
    # Same rows in the rewritten night (other tests of the session may add other nights to the world).
    assert result["after"]["tables"]["events"][NIGHT2] == world.baseline["tables"]["events"][NIGHT2]
    assert _night2_outputs(result["after"]) == _night2_outputs(world.baseline)
