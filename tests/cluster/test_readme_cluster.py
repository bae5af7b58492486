"""The README's cluster blocks (`<!-- docs-test: cluster -->`), run as written from the repository root
on the running platform, `make platform-down` included (the platform is started again afterwards:
this test runs last, see conftest.py). Two things differ from a reader's run, both to keep CI short
and other runs' tables apart: `recsys` commands get the small night's settings and a database of
their own, and the SQL names that database instead of `recsys`."""
from __future__ import annotations

import re
import subprocess
import uuid

from tests._readme import readme_blocks
from tests.cluster.conftest import ROOT, SMALL_NIGHT

FAST = [f"--set {s}" for s in SMALL_NIGHT]


def adapt(command: str, database: str, root) -> str:
    if re.search(r"(^|/)recsys \w", command):
        command += " " + " ".join([*FAST, f"--set storage.database={database}", f"--set storage.root={root / 'var'}",
                                   f"--set spark.warehouse_dir={root / 'warehouse'}"])
    return re.sub(r"\brecsys\.(\w+)", rf"{database}.\1", command)


def test_the_readme_cluster_blocks_run_as_written(platform, tmp_path):
    blocks = readme_blocks("cluster")
    commands = [c for block in blocks for c in block.commands]
    assert any("recsys nightly --conf standalone" in c for c in commands), commands
    assert commands[-1] == "make platform-down"
    # A database of this run: the metastore outlives the run, and a fixed name would find the tables
    # an earlier run left, located under its (since removed) temporary directory.
    database = f"readme_{uuid.uuid4().hex[:8]}"
    outputs = []
    try:
        for command in commands:
            done = subprocess.run(["bash", "-c", adapt(command, database, tmp_path)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=1800)
            assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            assert "Traceback" not in done.stdout + done.stderr, command
            outputs.append(done.stdout)
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "platform.sh"), "up"], cwd=ROOT, capture_output=True,
                       timeout=600)
    beeline = next(out for command, out in zip(commands, outputs) if "beeline" in command)
    assert re.search(r"2026-11-26\s*\|\s*\d+", beeline) or re.search(r"2026-11-26,\d+", beeline), beeline
    assert "stopped" in outputs[-1]


def test_adapt_only_touches_recsys_commands_and_names():
    assert adapt("make platform-up", "db", ROOT) == "make platform-up"
    assert adapt('beeline -e "SELECT * FROM recsys.recommendations"', "db", ROOT) == \
        'beeline -e "SELECT * FROM db.recommendations"'
    assert adapt(".venv/bin/recsys nightly --conf standalone", "db", ROOT).startswith(
        ".venv/bin/recsys nightly --conf standalone --set synthetic.events_per_day=1500")
