"""The promotion gate: a candidate model becomes production only if its offline metrics hold up.

Reference: the current production model evaluated on the same night; with no production model yet,
the most-popular baseline (a first model must at least beat popularity). A metric missing on either
side refuses the candidate (fail closed).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.errors import MissingInputError
from recsys_spark.evaluation import BASELINE_VERSION, OFFLINE_METRICS, read_offline_metrics
from recsys_spark.tables import qualified

log = logging.getLogger(__name__)

BOOTSTRAP_BASELINE = "most_popular"


@dataclass
class GateDecision:
    approved: bool
    reason: str
    candidate: str
    reference: str
    metrics: dict = field(default_factory=dict)


def decide(candidate: dict[str, float], reference: dict[str, float], metrics: list[str], tolerance: float,
           reference_is_baseline: bool) -> tuple[bool, str]:
    """Compare metric by metric. Against a model the candidate may lose up to ``tolerance`` (relative);
    against the bootstrap baseline it must not lose at all."""
    allowed = 0.0 if reference_is_baseline else tolerance
    for metric in metrics:
        if metric not in candidate:
            return False, f"candidate has no {metric} (fail closed)"
        if metric not in reference:
            return False, f"reference has no {metric} (fail closed)"
        floor = reference[metric] * (1 - allowed)
        if candidate[metric] < floor:
            return False, (f"{metric} {candidate[metric]:.4f} is below {floor:.4f} "
                           f"(reference {reference[metric]:.4f}, tolerance {allowed:.0%})")
    return True, "all gate metrics within tolerance"


def evaluate_gate(spark: SparkSession, cfg: Config, ds: str, candidate: str,
                  production: Optional[str]) -> GateDecision:
    sc = cfg.score
    read = lambda version, name=None: read_offline_metrics(  # noqa: E731
        spark, cfg.storage.database, ds, version, sc.gate_protocol, sc.gate_split, name)
    table = qualified(cfg.storage.database, OFFLINE_METRICS)
    if not spark.catalog.tableExists(table):
        raise MissingInputError(f"no offline metrics for ds={ds}: {table} does not exist; "
                                "run evaluate for this night first")
    cand = read(candidate)
    if production and production != candidate:
        reference, ref_name, is_baseline = read(production), production, False
    else:
        reference, ref_name, is_baseline = read(BASELINE_VERSION, BOOTSTRAP_BASELINE), BOOTSTRAP_BASELINE, True
    approved, reason = decide(cand, reference, sc.gate_metrics, sc.gate_tolerance, is_baseline)
    decision = GateDecision(approved, reason, candidate, ref_name,
                            {m: {"candidate": cand.get(m), "reference": reference.get(m)} for m in sc.gate_metrics})
    log.info("gate for %s vs %s on %s: %s (%s)", candidate, ref_name, ds,
             "APPROVED" if approved else "REFUSED", reason)
    return decision
