"""The stack this suite runs on (README "Stack"): `card` has Petastorm and Horovod, `current` has
neither (``make test STACK=current``). Asked of the library's own check (training.distributed), so the
suite and the jobs agree on what this environment can run.

Tests that train or run a night take the feed and backend the environment supports from here (on
`card` nothing changes: the shipped petastorm/horovod defaults); tests that exist only for Petastorm or
Horovod carry the ``card_only`` marker (pytest.ini), which ``make test STACK=current`` deselects and
conftest.py turns into a skip wherever this environment cannot run them.
"""
from __future__ import annotations

from recsys_spark.config import TrainConfig
from training.distributed import stack_conflicts

CARD_CONFLICTS = stack_conflicts(TrainConfig(feed="petastorm", backend="horovod"))
"""Why this environment cannot run Petastorm and Horovod (empty on the card stack)."""
CARD = not CARD_CONFLICTS
FEED = "petastorm" if CARD else "arrow"
BACKEND = "horovod" if CARD else "ddp"

FEED_SETTINGS = [] if CARD else [f"train.feed={FEED}"]
"""``--set`` values for configs that choose their own backend (single, ...)."""
SETTINGS = [] if CARD else [f"train.feed={FEED}", f"train.backend={BACKEND}"]
"""``--set`` values that make the shipped defaults runnable here (nothing on the card stack)."""


def set_args(settings: list[str]) -> list[str]:
    """``["--set", s, ...]`` for a job's command line."""
    return [arg for setting in settings for arg in ("--set", setting)]
