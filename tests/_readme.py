"""The README's fenced code blocks and how each is tested.

Convention: a block that shows commands or queries is preceded (blank lines allowed) by one marker
comment naming how it is tested:

* ``<!-- docs-test: local -->``: tests/test_readme.py runs it against a finished small nightly;
* ``<!-- docs-test: cluster -->``: the cluster test suite runs it (it imports :func:`readme_blocks`);
* ``<!-- docs-test: covered-by tests/x.py::test_a [tests/y.py::test_b ...] -->``: its real run is
  too slow for a docs test; the named existing tests run the same thing.

A block *needs* a marker when it is a bash/sh/sql/python block or has lines starting with ``$ ``;
plain output or diagram blocks need none.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

README = Path(__file__).resolve().parent.parent / "README.md"
CODE_LANGUAGES = {"bash", "sh", "shell", "console", "sql", "python"}
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<tag>[\w-]+)(?P<args>(?:\s+\S+)*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<language>[\w+-]*)\s*$")


@dataclass
class Block:
    language: str  # "" for an unlabelled fence
    text: str
    line: int  # 1-based line number of the opening fence
    tag: Optional[str] = None  # local | cluster | covered-by | None (no marker)
    args: list[str] = field(default_factory=list)  # covered-by: the test node ids

    @property
    def needs_marker(self) -> bool:
        return self.language in CODE_LANGUAGES or bool(self.prompt_lines)

    @property
    def prompt_lines(self) -> list[str]:
        """The commands of ``$ ``-style blocks (the other lines are their output)."""
        return [line[2:] for line in self.text.splitlines() if line.startswith("$ ")]

    @property
    def commands(self) -> list[str]:
        """Shell commands: the ``$ `` lines if there are any, else (bash/sh) every non-comment line,
        with trailing ``# comments`` and backslash continuations handled."""
        if self.prompt_lines:
            lines = self.prompt_lines
        elif self.language in ("bash", "sh", "shell"):
            lines = [line for line in self.text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        else:
            return []
        joined = "\n".join(lines).replace("\\\n", " ")
        return [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()]


def parse(text: str) -> list[Block]:
    """Every fenced block of a markdown text with the marker (if any) right above it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, start = opening["fence"], i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        block = Block(language=opening["language"].lower(), text="\n".join(body), line=start + 1)
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        marker = MARKER.match(lines[above]) if above >= 0 else None
        if marker:
            block.tag, block.args = marker["tag"], marker["args"].split()
        blocks.append(block)
        i += 1
    return blocks


def readme_blocks(tag: Optional[str] = None, path: Path = README) -> list[Block]:
    """The README's fenced blocks, all of them or those marked ``docs-test: <tag>``."""
    blocks = parse(path.read_text())
    return blocks if tag is None else [b for b in blocks if b.tag == tag]
