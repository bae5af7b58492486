"""Run manifests: what a nightly run did, stage by stage, as JSON next to its outputs."""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)


@dataclass
class StageRecord:
    name: str
    started_at: float
    ended_at: float = 0.0
    status: str = "running"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return round(self.ended_at - self.started_at, 1)


@dataclass
class Manifest:
    ds: str
    config_hash: str
    model_hash: str
    """Names tonight's candidate model: ``<ds>-<model_hash>``."""
    stages: list[StageRecord] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a stage; the caller fills the yielded dict with row counts and decisions."""
        record = StageRecord(name=name, started_at=time.time())
        self.stages.append(record)
        log.info("[%s] stage %s started", self.ds, name)
        try:
            yield record.details
            record.status = "ok"
        except BaseException:
            record.status = "failed"
            raise
        finally:
            record.ended_at = time.time()
            log.info("[%s] stage %s %s in %.1fs", self.ds, name, record.status, record.seconds)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for stage, record in zip(data["stages"], self.stages):
            stage["seconds"] = record.seconds
        return data

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str))
        tmp.replace(path)
