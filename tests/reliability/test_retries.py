"""Spark task failures: a failed task attempt is retried and the stage still writes the right rows."""
import pytest

from _world import NIGHT2, job, rcs

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def test_failed_first_task_attempts_are_retried_to_the_same_output(world):
    """With task retries (local[2,3]) and every mapInPandas task failing its first attempt, build
    (negative sampling) and score (model inference) still produce exactly the undisturbed rows."""
    result = world.plan([{"fault": "first_attempt"}, job("build_sequences", "--ds", NIGHT2),
                         job("score", "--ds", NIGHT2), {"snapshot": "after"}],
                        overrides=["spark.master=local[2,3]"])
    assert rcs(result) == [0, 0], result["log"][-3000:]
    assert "injected fault: first attempt of this task fails" in result["log"]
    after, baseline = result["after"], world.baseline
    assert after["datasets"][f"ds={NIGHT2}"] == baseline["datasets"][f"ds={NIGHT2}"]
    for table in ("user_sequences", "recommendations"):
        assert after["tables"][table][NIGHT2] == baseline["tables"][table][NIGHT2], table
