"""Where the per-night Parquet datasets live and what their ``metadata.json`` holds.

Layout under ``storage.root``::

    datasets/ds=<ds>/
        training_examples/   user_id, input array<int>[L], target array<int>[L], negatives array<int>[K]
        validation/          user_id, input array<int>[L], target int, seen array<int>
        test/                user_id, input array<int>[L], target int, seen array<int>
        item_counts/         item_idx int, count long   (window popularity, for logQ and baselines)
        transitions/         prev_idx int, next_idx int, count long   (training pairs, for the model)
        metadata.json        see DatasetMetadata

``input`` is left-padded with 0 (padding index). In ``training_examples`` ``target[t]`` is the next
item after ``input[t]`` and 0 where ``input[t]`` is padding. In ``validation``/``test`` ``input`` is
the user's history before the held-out ``target`` (its last L items) and ``seen`` every item of that
history, to be masked in full-ranking evaluation.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recsys_spark.errors import MissingInputError

TRAINING_EXAMPLES = "training_examples"
VALIDATION = "validation"
TEST = "test"
ITEM_COUNTS = "item_counts"
TRANSITIONS = "transitions"
METADATA = "metadata.json"


def dataset_dir(root: str | Path, ds: str) -> Path:
    return Path(root) / "datasets" / f"ds={ds}"


@dataclass
class DatasetMetadata:
    ds: str
    num_items: int
    """Size of the score vector: the largest item_idx + 1 (index 0 is padding)."""
    window_length: int
    num_negatives: int
    negative_alpha: float
    split: str
    item_index_version: str
    num_training_examples: int
    num_training_positions: int
    num_validation: int
    num_test: int
    row_groups: int
    quality: dict = field(default_factory=dict)

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / METADATA
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: str | Path) -> "DatasetMetadata":
        path = Path(directory) / METADATA
        if not path.exists():
            night = Path(directory).name.removeprefix("ds=")
            raise MissingInputError(f"no dataset for night {night} ({path} not found): "
                                    "run build-sequences for this night first")
        return cls(**json.loads(path.read_text()))
