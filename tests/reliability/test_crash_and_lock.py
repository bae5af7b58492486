"""A scoring process killed mid-write leaves the published night intact; concurrent runs of a stage
for one night are refused with the holder named."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from _world import NIGHT2, env, job, rcs
from recsys_spark.lock import EXIT_LOCKED, RunLocked, exclusive_run, lock_path

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def _files(location: str) -> dict[str, int]:
    root = Path(urlparse(location).path)
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _wait_for_write(proc, table_dir: Path, timeout: float = 180) -> Path:
    """The directory Spark is writing into, once its ``_temporary`` exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"score finished before it was killed:\n{proc.stdout.read()[-3000:]}"
        temporary = next(table_dir.rglob("_temporary"), None)
        if temporary is not None:
            return temporary.parent
        time.sleep(0.01)
    raise AssertionError("score never started writing its staged files")


def test_score_killed_while_writing_keeps_the_published_night(world):
    """SIGKILL of `recsys score` while it writes its staged files: readers see exactly the old
    partition (same rows, same files), and the re-run publishes one row per user."""
    published = world.locations[NIGHT2]
    files_before = _files(published)
    proc = world.command("score", "--ds", NIGHT2)
    staged = _wait_for_write(proc, world.recommendations_dir)
    os.killpg(proc.pid, signal.SIGKILL)  # driver, JVM and Python workers at once
    proc.wait(timeout=30)
    assert staged.exists() and staged.parent.name == f"ds={NIGHT2}"
    assert _files(published) == files_before

    result = world.plan([{"snapshot": "after_kill"}, job("score", "--ds", NIGHT2), {"snapshot": "rerun"}])
    after_kill, rerun = result["after_kill"], result["rerun"]
    assert after_kill["locations"][NIGHT2] == published
    assert after_kill["tables"]["recommendations"] == world.baseline["tables"]["recommendations"]
    assert rcs(result) == [0], result["log"][-3000:]
    users = world.baseline["tables"]["user_sequences"][NIGHT2]["rows"]
    assert rerun["tables"]["recommendations"][NIGHT2] == world.baseline["tables"]["recommendations"][NIGHT2]
    assert rerun["tables"]["recommendations"][NIGHT2]["rows"] == users  # one row per user, not doubled
    assert not staged.exists()  # the killed run's leftovers are cleaned by the next publish


HOLD = ("import sys, time\nfrom recsys_spark.lock import exclusive_run\n"
        "with exclusive_run(sys.argv[1], sys.argv[2], sys.argv[3]):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n")


def _holder(root, stage, ds) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), stage, ds], env=env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("stage", ["score", "build_sequences", "train", "evaluate"])
def test_second_run_of_a_stage_for_the_same_night_is_refused(world, stage):
    """While one run of a stage holds (stage, ds), a second `recsys <stage>` for that night exits
    at once with EXIT_LOCKED and names the holder, before it opens Spark or the metastore."""
    holder = _holder(world.root, stage, NIGHT2)
    try:
        started = time.monotonic()
        second = world.command(stage.replace("_", "-"), "--ds", NIGHT2)
        output, _ = second.communicate(timeout=120)
        assert second.returncode == EXIT_LOCKED, output[-3000:]
        assert f"another {stage} run for ds={NIGHT2} is in progress" in output
        assert f'"pid": {holder.pid}' in output and "master=" not in output  # no SparkSession started
        assert time.monotonic() - started < 60
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_per_stage_and_night_and_dies_with_its_holder(tmp_path):
    """Locks of other nights or stages are independent, and a SIGKILLed holder leaves no stale
    lock: the next run gets it."""
    holder = _holder(tmp_path, "score", NIGHT2)
    with pytest.raises(RunLocked, match=f"pid.*{holder.pid}"):
        with exclusive_run(tmp_path, "score", NIGHT2):
            pass
    with exclusive_run(tmp_path, "score", "2026-11-21"), exclusive_run(tmp_path, "train", NIGHT2):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(tmp_path, "score", NIGHT2).exists()
    with exclusive_run(tmp_path, "score", NIGHT2) as path:
        assert f'"pid": {os.getpid()}' in path.read_text()
