"""Every command and query in README.md is executed by a test (conventions: tests/_readme.py).

``local`` blocks run here against the small real nightly of tests/_nightly.py (shared with the e2e
test), from a temporary working directory whose ``var`` is that night's storage and ``.venv`` this
interpreter's virtualenv. To keep them small, every ``recsys <command>`` gets the nightly's own
``--set`` overrides (``_nightly.SETTINGS``) appended, except keys the command sets itself, and
``synthetic.events_per_day`` is always forced to the nightly's 1500 (the README generates 100000 a
night). ``../shared/...`` paths are resolved against the repository root, where CI has the datasets.
"""
from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from _nightly import SETTINGS
from _readme import Block, parse, readme_blocks

ROOT = Path(__file__).resolve().parent.parent
TAGS = {"local", "cluster", "covered-by"}
SHRINK = {"synthetic.events_per_day"}  # forced to the nightly's value even where the README sets it
RECSYS_JOB = re.compile(r"(?:^|\s)\S*recsys (?!-)[\w-]+")


def problems(blocks: list[Block], root: Path = ROOT) -> list[str]:
    """What is wrong with the markers: commands without one, unknown tags, covered-by naming no test."""
    found = []
    for block in blocks:
        if block.needs_marker and block.tag is None:
            found.append(f"line {block.line}: a {block.language or '$'} block without a docs-test marker")
        if block.tag is not None and block.tag not in TAGS:
            found.append(f"line {block.line}: unknown docs-test tag {block.tag!r} (known: {sorted(TAGS)})")
        if block.tag == "covered-by":
            if not block.args:
                found.append(f"line {block.line}: covered-by names no test")
            found += [f"line {block.line}: {node} does not exist" for node in block.args
                      if not node_exists(root, node)]
    return found


def node_exists(root: Path, node: str) -> bool:
    """``tests/x.py::test_name`` (or ``::Class::test_name``) is a function defined in that file."""
    path, _, name = node.partition("::")
    file = root / path
    if not name or not file.is_file():
        return False
    defined = {n.name for n in ast.walk(ast.parse(file.read_text()))
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return name.split("::")[-1].split("[")[0] in defined




def test_every_command_block_is_marked_and_covered_tests_exist():
    blocks = readme_blocks()
    assert [b for b in blocks if b.tag == "local"], "no local README blocks found: is the parser broken?"
    assert problems(blocks) == []


def test_the_marker_check_catches_unmarked_and_dangling_blocks():
    """The twin: an unmarked bash block, an unmarked ``$`` block, a python block, an unknown tag and a
    covered-by naming a missing test are all reported; plain output blocks are not."""
    text = ("```bash\nmake nightly\n```\n\n```\n$ recsys --help\ncommands:\n```\n\n```python\nprint(1)\n```\n\n"
            "<!-- docs-test: someday -->\n```sql\nSELECT 1\n```\n\n"
            "<!-- docs-test: covered-by tests/test_readme.py::test_nothing_like_this -->\n```bash\nls\n```\n\n"
            "```\nnight 2026-11-26: events ok\n```\n\n"
            "<!-- docs-test: covered-by tests/test_readme.py::test_the_marker_check_catches_unmarked_and_dangling_blocks -->\n"
            "```bash\nls\n```\n")
    found = problems(parse(text))
    assert [p.split(":")[0] for p in found] == ["line 1", "line 5", "line 10", "line 15", "line 20"]
    assert "unknown docs-test tag 'someday'" in found[3] and "test_nothing_like_this" in found[4]


def shell_commands(block: Block) -> list[str]:
    """The block's commands as this test runs them (overrides appended, ../shared made absolute)."""
    commands = []
    for command in block.commands:
        if RECSYS_JOB.search(command):
            own = set(re.findall(r"--set\s+([\w.]+)=", command))
            extra = [s for s in SETTINGS if s.split("=", 1)[0] not in own or s.split("=", 1)[0] in SHRINK]
            command += "".join(f" --set {shlex.quote(s)}" for s in extra)
        commands.append(command.replace("../shared/", f"{ROOT.parent}/shared/"))
    return commands


def shown_output(block: Block) -> list[str]:
    return [line for line in block.text.splitlines() if line.strip() and not line.startswith("$ ")]


@pytest.fixture(scope="module")
def workdir(nightly_runs, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("readme")
    (work / "var").symlink_to(nightly_runs["nightly"].var)
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return work


def run(args, workdir: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


@pytest.mark.integration
@pytest.mark.parametrize("block", readme_blocks("local"), ids=lambda b: f"README line {b.line}")
def test_local_block_runs_against_a_small_nightly(block, workdir):
    if block.language == "python":
        result = run([sys.executable, "-c", block.text], workdir)
        assert result.returncode == 0, result.stderr[-4000:]
        key = re.search(r"(?:user_id|item_id) = '(\w+)'", block.text).group(1)  # the user or item queried
        assert re.search(rf"^\|\s*{key}\s*\|\s*1\s*\|", result.stdout, re.M), result.stdout[-2000:]  # its rank 1
        return
    commands = shell_commands(block)
    assert commands, f"README line {block.line}: a local block without commands"
    for command in commands:
        result = run(["bash", "-c", command], workdir)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        assert "Traceback" not in result.stderr, result.stderr[-4000:]
    output = shown_output(block)
    if len(commands) == 1 and output and commands == block.commands:
        # nothing appended: the README shows exactly what the command prints (blank lines aside)
        assert [line for line in result.stdout.splitlines() if line.strip()] == output
