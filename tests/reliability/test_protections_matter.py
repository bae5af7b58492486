"""The reliability tests can fail: each case removes one protection from the code (a one-line source
mutation), runs the reliability test that guards it, and requires that test to fail for the expected
reason. Run with ``make reliability-mutations`` (``pytest -m mutation``); excluded from ``make test``.

Job processes import the mutated source from disk; in-process tests get the mutated module reloaded.
The shared world is copied once, before the first mutation, and restored before every case, because a
run without its protection may damage it (that is the point)."""
from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import test_bad_nights as bad_nights
import test_crash_and_lock as crash_and_lock
import test_hostile_input as hostile
import test_rerun as rerun
import test_retries as retries
import test_training_kill as training_kill
from _world import REPO

pytestmark = pytest.mark.mutation


@dataclass(frozen=True)
class Mutation:
    path: str
    old: str
    new: str
    test: str
    """``module.function`` of the reliability test that must fail (modules as imported above)."""
    expect: str
    """A regex the failure must match, so the test fails for the protection's reason, not another."""
    reload: str = ""
    """Module to reload in this process (for tests that call the library in-process)."""
    params: tuple = ()
    """Arguments of a parametrized test, e.g. (("stage", "score"),)."""


MUTATIONS = {
    "1 rerun: negatives from an unseeded RNG": Mutation(
        "recsys_spark/sequences.py",
        'F.xxhash64(F.lit(seed), F.col(S.USER_ID), F.col("window_end"))',
        '(F.rand() * 2 ** 62).cast("long")',
        "rerun.test_rerunning_every_stage_reproduces_the_night_and_touches_no_other", r"datasets"),
    "1 rerun: training without seeding torch": Mutation(
        "training/trainer.py", "    torch.manual_seed(seed)\n", "    torch.seed()\n",
        # tables: the recommendations a different model publishes differ before its weights are compared
        "rerun.test_rerunning_every_stage_reproduces_the_night_and_touches_no_other", r"tables|models"),
    "1 rerun: static partition overwrite (a night's write replaces every night)": Mutation(
        "recsys_spark/session.py", '"spark.sql.sources.partitionOverwriteMode": "dynamic"',
        '"spark.sql.sources.partitionOverwriteMode": "static"',
        "rerun.test_rerunning_every_stage_reproduces_the_night_and_touches_no_other", r"tables"),
    "2 kill: score overwrites the published partition in place": Mutation(
        "recsys_spark/publish.py",
        '    location = f"{table_location(spark, table)}/{VERSIONS_DIR}/ds={ds}/run={uuid.uuid4().hex[:12]}"\n'
        '    (rows.drop(S.DS).repartition(partitions, contract.key).sortWithinPartitions(contract.key)\n'
        '     .write.mode("error").parquet(location))',
        '    location = (partition_location(spark, table, ds)\n'
        '                or f"{table_location(spark, table)}/{VERSIONS_DIR}/ds={ds}/run={uuid.uuid4().hex[:12]}")\n'
        '    (rows.drop(S.DS).repartition(partitions, contract.key).sortWithinPartitions(contract.key)\n'
        '     .write.mode("overwrite").parquet(location))',
        "crash_and_lock.test_score_killed_while_writing_keeps_the_published_night",
        r"_files\(published\) == files_before|score never started writing"),
    "3 horovod kill: --resume ignores the checkpoints": Mutation(
        "training/trainer.py", "found = store.latest_valid_epoch() if comm.rank == 0 else None",
        "found = None", "training_kill.test_killed_rank_fails_the_job_and_resume_finishes",
        r"resumed from"),
    "4 retries: the master allows no task retry": Mutation(
        "tests/reliability/test_retries.py", '"spark.master=local[2,3]"', '"spark.master=local[2]"',
        "retries.test_failed_first_task_attempts_are_retried_to_the_same_output", r"rcs\(result\)",
        reload="test_retries"),
    "5 hostile rows: rows without a user are dropped, not quarantined": Mutation(
        "recsys_spark/sequences.py",
        "rejected = staged.where(F.col(_REASON).isNotNull())",
        "rejected = staged.where(F.col(_REASON).isNotNull() & ~_blank(F.col(S.USER_ID)))",
        "hostile.test_fuzzed_event_rows_are_accepted_or_quarantined_never_lost",
        r"len\(accepted\) \+ len\(rejected\) == len\(rows\)", reload="recsys_spark.sequences"),
    "6 small night: no row-count band": Mutation(
        "recsys_spark/publish.py", "if n_prev and not low <= n_rows / n_prev <= high:", "if False:",
        "bad_nights.test_empty_or_abnormally_small_night_fails_loudly_and_publishes_nothing",
        r"rcs\(result\) == \[0, 3, 3\]"),
    "6 empty night: built from the earlier nights of the window": Mutation(
        "recsys_spark/build.py", "if window.where(F.col(S.DS) == ds).isEmpty():", "if False:",
        "bad_nights.test_empty_or_abnormally_small_night_fails_loudly_and_publishes_nothing",
        r"rcs\(result\) == \[0, 3, 3\]"),
    "7 gate: every candidate approved": Mutation(
        "recsys_spark/gate.py", "    allowed = 0.0 if reference_is_baseline else tolerance\n",
        '    return True, "all gate metrics within tolerance"\n',
        "bad_nights.test_bad_candidates_are_refused_and_rollback_is_one_command", r"rcs\(first\) == \[4, 4, 0, 0\]"),
    "7 rollback: production pointer left where it was": Mutation(
        "jobs/rollback.py", "set_production(root, target,", "set_production(root, current,",
        "bad_nights.test_bad_candidates_are_refused_and_rollback_is_one_command",
        r"production.. == MODEL_A|rolled_back"),
    "8 time zone: Spark session in the machine's zone": Mutation(
        "recsys_spark/session.py", '        "spark.sql.session.timeZone": "UTC",\n', "",
        "rerun.test_output_ignores_clock_time_zone_file_order_and_partitioning", r"_night2_outputs|events"),
    "8 partitions: negatives seeded by partition id": Mutation(
        "recsys_spark/sequences.py",
        'F.xxhash64(F.lit(seed), F.col(S.USER_ID), F.col("window_end"))',
        'F.xxhash64(F.lit(seed), F.col(S.USER_ID), F.col("window_end"), F.spark_partition_id())',
        "rerun.test_output_ignores_clock_time_zone_file_order_and_partitioning", r"_night2_outputs"),
    "9 concurrency: score runs without its lock": Mutation(
        "jobs/score.py",
        'return run_exclusive(cfg.storage.root, "score", args.ds.isoformat(), lambda: _score(cfg, args))',
        "return _score(cfg, args)",
        "crash_and_lock.test_second_run_of_a_stage_for_the_same_night_is_refused",
        r"second.returncode == EXIT_LOCKED", params=(("stage", "score"),)),
    "9 concurrency: one lock per stage for all nights": Mutation(
        "recsys_spark/lock.py", 'f"{stage}.ds={ds}.lock"', 'f"{stage}.lock"',
        "crash_and_lock.test_lock_is_per_stage_and_night_and_dies_with_its_holder", r"RunLocked|locked",
        reload="recsys_spark.lock"),
}


@contextmanager
def mutated(mutation: Mutation):
    """The source file with ``old`` replaced by ``new`` for the block; restored byte for byte (and its
    mtime, so no stale bytecode of the mutant is ever used afterwards)."""
    file = REPO / mutation.path
    original, stat = file.read_text(), file.stat()
    assert original.count(mutation.old) == 1, f"mutation no longer applies: {mutation.old!r} in {mutation.path}"
    file.write_text(original.replace(mutation.old, mutation.new))
    _reload(mutation)
    try:
        yield
    finally:
        file.write_text(original)
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        _reload(mutation)


def _reload(mutation: Mutation) -> None:
    if mutation.reload:
        importlib.reload(sys.modules[mutation.reload])


@pytest.fixture(scope="session")
def pristine(world, tmp_path_factory):
    """A copy of the freshly built world, taken before any mutation ran."""
    copy = tmp_path_factory.mktemp("pristine") / "world"
    shutil.copytree(world.directory, copy, symlinks=True)
    return copy, dict(world.locations)


@pytest.fixture
def restored_world(world, pristine):
    copy, locations = pristine
    shutil.rmtree(world.directory)
    shutil.copytree(copy, world.directory, symlinks=True)
    world.locations = dict(locations)
    return world


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_reliability_test_fails_without_its_protection(name, request):
    mutation = MUTATIONS[name]
    module, function = mutation.test.split(".")
    with mutated(mutation):
        target = getattr(globals()[module], function)
        given = dict(mutation.params)
        kwargs = {p: given[p] if p in given else request.getfixturevalue("restored_world" if p == "world" else p)
                  for p in inspect.signature(target).parameters}
        with pytest.raises(Exception) as failure:
            target(**kwargs)
    source = Path(inspect.getsourcefile(target))
    frames = [entry for entry in failure.traceback if Path(str(entry.path)) == source]
    where = f"{source.name}:{frames[-1].lineno + 1}: {str(frames[-1].statement).strip()}" if frames else "?"
    message = f"{where}\n{failure.typename}: {failure.value}"
    print(f"\n[{name}] {mutation.test} failed as required at {message[:1500]}")
    assert re.search(mutation.expect, message), f"failed, but not for the expected reason:\n{message[-3000:]}"
