"""``recsys tune``: choose the model and training settings for a catalogue on its own validation split.

An Optuna study (seeded TPE sampler, median pruner) trains one trial at a time in this process on
the night's ``training_examples`` and scores each epoch on ``validation``: the objective is the best
epoch's validation NDCG@10, the metric the trainer early-stops on. The ``test`` split is never opened
(the trainer reads neither it nor anything derived from it), so the figures ``recsys evaluate``
reports for the tuned settings stay unbiased.

* Trial 0 is the config as given, so the result is never worse on validation than the defaults.
* A trial that the configured deployment runs as ``num_proc`` ranks of ``batch_size`` examples runs
  here as one process with ``batch_size * num_proc`` examples per step: the same global batch, steps
  per epoch and learning-rate schedule, and one process never competes with itself for cores.
* After ``tune.startup_trials`` complete trials, one whose validation NDCG@10 after an epoch is below
  the median of the earlier trials at that epoch is stopped (pruned) once past the warm-up epochs.

Output under ``<storage.root>/tuning/ds=<ds>/``: ``tuned.yaml`` (the chosen ``train`` settings, a
config overlay: ``recsys train|nightly ... --overlay tuned.yaml``), ``trials.json`` (every trial: its
settings, state, per-epoch values, best-epoch metrics, time) and ``trials.png``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import yaml

from recsys_spark.config import TUNABLE, Config, ConfigError
from recsys_spark.datasets import DatasetMetadata, dataset_dir
from training.comm import Comm
from training.trainer import EARLY_STOP_METRIC, config_from_dict, train

log = logging.getLogger(__name__)

OVERLAY_FILE = "tuned.yaml"
TRIALS_FILE = "trials.json"
PLOT_FILE = "trials.png"

# name -> ("log" | "float", low, high) or ("choice", [options]); training.losses and the model
# define what the choices mean.
SPACE: dict[str, tuple] = {
    "lr": ("log", 1e-3, 3e-2),
    "dropout": ("float", 0.0, 0.6),
    "hidden_dropout": ("float", 0.0, 0.6),
    "weight_decay": ("log", 1e-4, 1e-1),
    "embedding_dim": ("choice", [64, 128, 256]),
    "hidden_size": ("choice", [128, 256, 512]),
    "batch_size": ("choice", [32, 64, 128, 256]),
    "num_layers": ("choice", [1, 2]),
    "last_item_transitions": ("choice", [True, False]),
    "score_blend": ("choice", [True, False]),
    "cell": ("choice", ["lstm", "gru"]),
    "loss": ("choice", ["auto", "softmax", "sampled_softmax", "bpr_max"]),
}


def tuning_dir(root: str | Path, ds: str) -> Path:
    return Path(root) / "tuning" / f"ds={ds}"


def search_space(cfg: Config) -> dict[str, tuple]:
    """The configured parameters' ranges, widened to contain the config's own value (trial 0)."""
    unknown = sorted(set(cfg.tune.params) - set(SPACE))
    if unknown or not cfg.tune.params:
        raise ConfigError(f"tune.params: {', '.join(unknown) or 'empty'}; choose among {', '.join(TUNABLE)}")
    space = {}
    for name in cfg.tune.params:
        kind, *bounds = SPACE[name]
        current = getattr(cfg.train, name)
        if kind == "choice":
            options = bounds[0]
            space[name] = (kind, options if current in options else [current, *options])
        else:
            space[name] = (kind, min(bounds[0], current), max(bounds[1], current))
    return space


def _suggest(trial, space: dict[str, tuple]) -> dict[str, Any]:
    params = {}
    for name, (kind, *bounds) in space.items():
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, bounds[0])
        else:
            params[name] = trial.suggest_float(name, bounds[0], bounds[1], log=kind == "log")
    return params


def trial_config(cfg: Config, params: dict[str, Any]) -> Config:
    """``cfg`` with the trial's settings, run as one process with the deployment's global batch."""
    trial = config_from_dict(cfg.to_dict())
    for name, value in params.items():
        setattr(trial.train, name, value)
    distributed = cfg.train.backend != "single" and cfg.train.num_proc > 1
    trial.train.batch_size = trial.train.batch_size * (cfg.train.num_proc if distributed else 1)
    trial.train.backend, trial.train.num_proc = "single", 1
    trial.train.threads_per_proc = cfg.tune.threads or _cores()
    return trial


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def epoch_reporter(trial, values: list[float]):
    """``on_epoch`` for the trainer: record and report the epoch's value, and stop the run if Optuna
    prunes it."""
    import optuna

    def report(epoch: int, metrics: dict[str, float]) -> None:
        values.append(round(metrics[EARLY_STOP_METRIC], 6))
        trial.report(metrics[EARLY_STOP_METRIC], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation {EARLY_STOP_METRIC} {metrics[EARLY_STOP_METRIC]:.4f} "
                                     f"after epoch {epoch + 1} is below the median")
    return report


def tune(cfg: Config, ds: str) -> dict[str, Any]:
    """Run the study for night ``ds``; write the overlay, the trial records and their plot."""
    import optuna

    DatasetMetadata.load(dataset_dir(cfg.storage.root, ds))  # a missing night fails before any trial
    space = search_space(cfg)
    tc = cfg.tune
    if tc.trials < 1:
        raise ConfigError(f"tune.trials must be at least 1, got {tc.trials}")
    out = tuning_dir(cfg.storage.root, ds)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tc.seed, n_startup_trials=tc.startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=tc.startup_trials,
                                           n_warmup_steps=tc.prune_warmup_epochs))
    study.enqueue_trial({name: getattr(cfg.train, name) for name in space})
    records: list[dict[str, Any]] = []
    started = time.perf_counter()

    def objective(trial) -> float:
        params = _suggest(trial, space)
        trial_started = time.perf_counter()
        record = {"number": trial.number, "params": params, "state": "RUNNING", "epoch_values": []}
        records.append(record)
        log.info("trial %d/%d: %s", trial.number + 1, tc.trials, _describe(params))
        try:
            result = train(trial_config(cfg, params), ds, Comm(), publish=False,
                           model_version=f"tune-{ds}-trial{trial.number}",
                           on_epoch=epoch_reporter(trial, record["epoch_values"]))
        except optuna.TrialPruned:
            record.update(state="PRUNED", seconds=round(time.perf_counter() - trial_started, 1))
            raise
        except BaseException:
            record["state"] = "FAIL"
            raise
        record.update(state="COMPLETE", value=result["validation"][EARLY_STOP_METRIC],
                      validation=result["validation"], best_epoch=result["best_epoch"],
                      epochs_run=result["epochs_run"],
                      seconds=round(time.perf_counter() - trial_started, 1))
        return result["validation"][EARLY_STOP_METRIC]

    def progress(study, frozen) -> None:
        done = [t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
        best = max(done, key=lambda t: t.value) if done else None
        log.info("trial %d/%d %s%s; best %s; %.0f s elapsed", frozen.number + 1, tc.trials,
                 frozen.state.name.lower(), "" if frozen.value is None else f", {EARLY_STOP_METRIC} {frozen.value:.4f}",
                 "none yet" if best is None else f"{best.value:.4f} (trial {best.number + 1})",
                 time.perf_counter() - started)
        _write_records(out, _summary(cfg, ds, space, records, time.perf_counter() - started))

    study.optimize(objective, n_trials=tc.trials, timeout=tc.timeout_s, callbacks=[progress],
                   gc_after_trial=True)
    summary = _summary(cfg, ds, space, records, time.perf_counter() - started)
    if summary["best"] is None:
        raise RuntimeError(f"no tuning trial completed for {ds}: see {out / TRIALS_FILE}")
    _write_atomic(out / OVERLAY_FILE, _overlay_text(summary))
    _write_records(out, summary)
    _plot(summary, out / PLOT_FILE)
    log.info("best of %d trials (%d pruned): validation %s %.4f vs %.4f for the settings as given; "
             "overlay %s", summary["n_trials"], summary["n_pruned"], EARLY_STOP_METRIC,
             summary["best"]["value"], summary["given"]["value"], out / OVERLAY_FILE)
    return summary


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _summary(cfg: Config, ds: str, space: dict, records: list[dict], seconds: float) -> dict[str, Any]:
    complete = [r for r in records if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: (r["value"], -r["number"])) if complete else None
    given = records[0] if records and records[0]["state"] == "COMPLETE" else None
    return {
        "ds": ds, "metric": f"validation {EARLY_STOP_METRIC}", "seed": cfg.tune.seed,
        "budget": {"trials": cfg.tune.trials, "timeout_s": cfg.tune.timeout_s},
        "space": {k: list(v) for k, v in space.items()},
        "n_trials": len(records), "n_pruned": sum(r["state"] == "PRUNED" for r in records),
        "seconds": round(seconds, 1),
        "given": None if given is None else {"params": given["params"], "value": given["value"]},
        "best": None if best is None else {"number": best["number"], "params": best["params"],
                                           "value": best["value"], "validation": best["validation"]},
        "trials": records,
    }


def _overlay_text(summary: dict[str, Any]) -> str:
    best = summary["best"]
    given = summary["given"]
    header = (f"# recsys tune --ds {summary['ds']}: trial {best['number'] + 1} of {summary['n_trials']} "
              f"({summary['n_pruned']} pruned, {summary['seconds']:.0f} s), {summary['metric']} "
              f"{best['value']:.4f}" + ("" if given is None else f" (settings as given: {given['value']:.4f})")
              + ".\n# Use it with: recsys train|nightly ... --overlay <this file>\n")
    params = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in best["params"].items()}
    return header + yaml.safe_dump({"train": params}, sort_keys=True)


def _write_records(out: Path, summary: dict[str, Any]) -> None:
    _write_atomic(out / TRIALS_FILE, json.dumps(summary, indent=2, sort_keys=True))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    best_so_far, running = [], -math.inf
    for r in summary["trials"]:
        if r["state"] == "COMPLETE":
            running = max(running, r["value"])
        best_so_far.append(running if running > -math.inf else float("nan"))
    numbers = [r["number"] + 1 for r in summary["trials"]]
    for state, style in (("COMPLETE", dict(marker="o", color="tab:blue")),
                         ("PRUNED", dict(marker="x", color="tab:gray"))):
        chosen = [r for r in summary["trials"] if r["state"] == state and r.get("epoch_values")]
        ax.scatter([r["number"] + 1 for r in chosen],
                   [r["value"] if state == "COMPLETE" else max(r["epoch_values"]) for r in chosen],
                   label=state.lower(), **style)
    ax.step(numbers, best_so_far, where="post", color="tab:orange", label="best so far")
    if summary["given"] is not None:
        ax.axhline(summary["given"]["value"], color="tab:green", linestyle="--", label="settings as given")
    ax.set(xlabel="trial", ylabel=summary["metric"], title=f"recsys tune --ds {summary['ds']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
