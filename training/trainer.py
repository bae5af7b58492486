"""The training loop, written once for every backend (see :mod:`training.comm`).

Per epoch: exactly ``steps`` batches on every rank, AdamW with clipped (averaged) gradients, a
warm-up-then-decay learning rate, then full-ranking validation (NDCG@10, seen items masked unless
``evaluate.mask_seen`` is false: early stopping and ``recsys tune`` rank as the evaluation does)
averaged over ranks, early stopping, and an atomic checkpoint from rank 0. The RNGs are reseeded from
(seed, epoch, rank) at the start of each epoch, so an epoch draws the same dropout masks and batches
whether it runs straight through or after a resume, on any number of ranks, without having to carry
every rank's RNG state in rank 0's checkpoint.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from recsys_spark.config import Config
from recsys_spark.datasets import (ITEM_COUNTS, TRAINING_EXAMPLES, TRANSITIONS, VALIDATION,
                                   DatasetMetadata, dataset_dir)
from recsys_spark.metrics import ranking_metrics, seen_mask, target_ranks
from recsys_spark.model import (BLEND_FEATURES, BLEND_WEIGHTS, LSTMRecommender, load_model, save_model,
                                warm_start)
from recsys_spark.registry import load_registry, models_root, register
from recsys_spark.schemas import INPUT, SEEN, TARGET
from recsys_spark.sequences import VALIDATION_ONLY
from training.checkpoint import CheckpointStore, check_architecture
from training.comm import Comm
from training.data import make_feed, read_eval_split, read_item_counts, read_transitions
from training.losses import AUTO, LossComputer, resolve_loss

log = logging.getLogger(__name__)


def resolve_transitions(setting: bool | str, split: str) -> bool:
    """``train.last_item_transitions``: True, False, or ``auto``. Auto turns the term off where the
    night's test queries come from outside it (``validation_only``: new sessions, as in session-based
    recommendation): there the learned gate, trained on users whose other pairs are in the counts,
    trusts them more than a new session can (yoochoose, test HR@10 0.6004 without the term vs 0.5872
    with it; leaving each session's own pairs out of its training counts gave 0.5814)."""
    if setting == AUTO:
        return split != VALIDATION_ONLY
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"train.last_item_transitions must be true, false or {AUTO}, got {setting!r}")


def resolve_blend(setting: bool | str, mask_seen: bool) -> bool:
    """``train.score_blend``: True, False, or ``auto``, which turns the held-out blend on where the
    validation and test rankings keep the seen items (``evaluate.mask_seen: false``, session data):
    with them masked a return is never recommended and the learned transition term is on."""
    if setting == AUTO:
        return not mask_seen
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"train.score_blend must be true, false or {AUTO}, got {setting!r}")


EARLY_STOP_METRIC = "ndcg@10"
METRIC_KS = (1, 5, 10, 20)


def default_model_version(cfg: Config, ds: str) -> str:
    """Deterministic: the same night and model-shaping config always name the same version."""
    return f"{ds}-{cfg.model_hash()}"


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` shipped to a worker as a plain dict (``Config.to_dict``)."""
    defaults = Config()
    return Config(**{f.name: type(getattr(defaults, f.name))(**data[f.name])
                     for f in dataclasses.fields(Config)})


def seed_everything(*parts: int) -> None:
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine or linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"train.lr_schedule must be cosine or linear, got {schedule!r}")


REPEAT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0)
"""Candidate weights of each repeat feature (is_last, in_history), in logits: 4 already puts a
return above nearly every other item. Ascending, so a tie keeps the smaller weights."""
TRANSITION_GRID = (0.0, 0.5, 1.0)
"""Candidate weights of each transition feature (followed, log1p_count)."""


@torch.no_grad()
def calibrate_blend(model: LSTMRecommender, split: dict, batch_size: int, mask_seen: bool,
                    comm: Comm) -> tuple[list[float], dict[str, float]]:
    """The blend weights (BLEND_FEATURES) of the grid that maximise the validation
    EARLY_STOP_METRIC of ``model`` (its other parameters fixed), and that split's metrics with
    them. The transition features are searched only for a model with counts that does not learn
    the term. ``model`` is left as it is (scored through an unblended copy). Collective: every
    rank scores its own shard and the metrics are averaged."""
    transitions = TRANSITION_GRID if model.has_transition_counts and not model.uses_transitions else (0.0,)
    grid = list(itertools.product(REPEAT_GRID, REPEAT_GRID, transitions, transitions))
    searched = tuple(any(weights[i] for weights in grid) for i in range(len(BLEND_FEATURES)))
    unblended = copy.deepcopy(model).eval()
    unblended.blend_weights.zero_()
    ranks: list[list[np.ndarray]] = [[] for _ in grid]
    for start in range(0, len(split[TARGET]), batch_size):
        rows = slice(start, start + batch_size)
        inputs = torch.as_tensor(split[INPUT][rows]).long()
        base = unblended.score_next(inputs)
        features = unblended.blend_features(inputs, searched)
        mask = seen_mask(split[SEEN][rows], model.num_items) if mask_seen else None
        for i, weights in enumerate(grid):
            scores = base + sum(w * f for w, f in zip(weights, features) if w)
            ranks[i].append(target_ranks(scores, split[TARGET][rows], mask).numpy())
    metrics = [averaged_metrics(np.concatenate(r) if r else np.zeros(0), comm) for r in ranks]
    best = max(range(len(grid)), key=lambda i: (metrics[i][EARLY_STOP_METRIC], -i))
    return list(grid[best]), metrics[best]


@torch.no_grad()
def split_ranks(model: LSTMRecommender, split: dict, batch_size: int, mask_seen: bool = True) -> np.ndarray:
    """Conservative full-ranking rank of each row's target, padding and (``mask_seen``, as
    ``evaluate.mask_seen``) its seen items masked."""
    was_training = model.training
    model.eval()
    ranks = []
    for start in range(0, len(split[TARGET]), batch_size):
        rows = slice(start, start + batch_size)
        scores = model.score_next(split[INPUT][rows])
        mask = seen_mask(split[SEEN][rows], model.num_items) if mask_seen else None
        ranks.append(target_ranks(scores, split[TARGET][rows], mask).numpy())
    model.train(was_training)
    return np.concatenate(ranks) if ranks else np.zeros(0)


def averaged_metrics(ranks: np.ndarray, comm: Comm, ks=METRIC_KS) -> dict[str, float]:
    """Metrics over all ranks' users: per-rank means weighted by their user counts, summed."""
    local = ranking_metrics(ranks, ks)
    count = float(np.sum(np.isfinite(ranks) & (ranks > 0)))
    keys = sorted(local)
    vec = torch.tensor([local[k] * count if count else 0.0 for k in keys] + [count], dtype=torch.float64)
    total = comm.allreduce_sum(vec)
    if total[-1] == 0:
        raise ValueError("the validation split has no rows with a target: cannot early-stop on it")
    return {k: float(total[i] / total[-1]) for i, k in enumerate(keys)}


def parameter_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss")
    for key in ("ndcg@10", "hr@10", "mrr@10"):
        ax_metric.plot(epochs, [h["validation"][key] for h in history], marker="o", label=key)
    ax_metric.set(xlabel="epoch", title="validation (full ranking)")
    ax_metric.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _publish_artifact(final: Path, write) -> None:
    """Write the artifact into a temp directory, then swap it in with renames (no half artifacts)."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        final.replace(old)
        tmp.replace(final)
        shutil.rmtree(old)
    else:
        tmp.replace(final)


def train(cfg: Config, ds: str, comm: Optional[Comm] = None, resume: bool = False,
          model_version: Optional[str] = None, publish: bool = True,
          on_epoch: Optional[Callable[[int, dict[str, float]], None]] = None) -> dict[str, Any]:
    """Train on night ``ds``; rank 0 publishes the artifact and registers it.

    Returns (on every rank) the version, artifact directory, best validation metrics and a
    fingerprint of this rank's final parameters together with every rank's fingerprint.
    ``publish=False`` (a tuning trial) writes no checkpoint, artifact or registry entry;
    ``on_epoch(epoch, validation_metrics)`` runs after each epoch and may raise to stop the run.
    """
    comm = comm or Comm()
    tc = cfg.train
    version = model_version or default_model_version(cfg, ds)
    data_dir = dataset_dir(cfg.storage.root, ds)
    meta = DatasetMetadata.load(data_dir)
    store = CheckpointStore(Path(cfg.storage.root) / "checkpoints" / version, tc.keep_checkpoints)

    seed_everything(tc.seed)
    use_transitions = resolve_transitions(tc.last_item_transitions, meta.split)
    use_blend = resolve_blend(tc.score_blend, cfg.evaluate.mask_seen)
    # The blend weighs the counts too; a night built before they were part of it blends without.
    counts_needed = use_transitions or (use_blend and (data_dir / TRANSITIONS).exists())
    transitions = read_transitions(data_dir / TRANSITIONS) if counts_needed else None
    model = LSTMRecommender(meta.num_items, tc.embedding_dim, tc.hidden_size, tc.num_layers,
                            tc.cell, tc.dropout,
                            transition_pairs=None if transitions is None else len(transitions[0]),
                            hidden_dropout=tc.hidden_dropout, blend=use_blend,
                            learned_transitions=use_transitions)
    if transitions is not None:
        model.set_transitions(*transitions)
    feed = make_feed(tc, data_dir / TRAINING_EXAMPLES, comm.rank, comm.size)
    steps = feed.steps
    total_steps = steps * tc.epochs
    # Fused: one kernel updates every parameter instead of a Python loop over them (4-7% more
    # positions/s on yoochoose's small model; the same metrics to 4 decimals).
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    train_model, optimizer = comm.wrap(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, tc.warmup_steps, total_steps, tc.lr_schedule))

    start_epoch, best, best_epoch, bad_epochs = 0, -math.inf, -1, 0
    history: list[dict] = []
    best_state = None
    if resume:
        # Rank 0 picks the checkpoint so every rank resumes the same epoch.
        found = store.latest_valid_epoch() if comm.rank == 0 else None
        epoch = int(comm.broadcast(torch.tensor([-1 if found is None else found]))[0])
        if epoch < 0:
            log.warning("resume: no valid checkpoint under %s; starting from scratch", store.directory)
        else:
            state = store.load(epoch)
            if state is None:
                raise RuntimeError(f"rank {comm.rank} cannot read checkpoint {store.path(epoch)}")
            check_architecture(state["architecture"], model.arch, store.path(epoch))
            if state["config"] != cfg.to_dict():
                log.warning("resume: config differs from the checkpoint's (architecture unchanged)")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, best, best_epoch = state["epoch"] + 1, state["best_metric"], state["best_epoch"]
            bad_epochs, history, best_state = state["bad_epochs"], state["history"], state["best_model"]
            log.info("resumed from %s (epoch %d, best %s %.4f)", store.path(epoch), epoch + 1,
                     EARLY_STOP_METRIC, best)
    else:
        if comm.rank == 0 and publish:
            store.clear()
        if tc.warm_start:
            _warm_start_from_production(cfg, model)
    comm.sync_state(model, optimizer)
    comm.barrier()

    item_counts = read_item_counts(data_dir / ITEM_COUNTS, meta.num_items)
    loss_kind = resolve_loss(tc.loss, meta.num_items, tc.full_softmax_max_items)
    if loss_kind != tc.loss:
        log.info("train.loss=%s: %s for %d items", tc.loss, loss_kind, meta.num_items - 1)
    loss_fn = LossComputer(loss_kind, item_counts, meta.negative_alpha, meta.num_negatives,
                           tc.batch_size, tc.in_batch_negatives, tc.logq_correction, tc.bpr_reg,
                           tc.shared_negatives)
    validation = read_eval_split(data_dir / VALIDATION, comm.rank, comm.size)
    stopped_early = False
    # Length-grouped batches hold very different numbers of targets (a batch of one-click
    # sessions against one of full windows); scaling each batch's mean loss by its share of the
    # average batch's targets weighs every target alike, as random batches do.
    mean_batch_positions = tc.batch_size * meta.num_training_positions / max(meta.num_training_examples, 1)

    for epoch in range(start_epoch, tc.epochs):
        if bad_epochs >= tc.patience:
            stopped_early = True
            break
        seed_everything(tc.seed, epoch, comm.rank)
        train_model.train()
        loss_sum, positions, started = 0.0, 0, time.perf_counter()
        progress = _progress(comm.rank == 0, steps, f"epoch {epoch + 1}/{tc.epochs}")
        batches = feed.epoch(epoch)
        for step in range(1, steps + 1):
            # Reading the batch is inside the guard too: a rank stuck in its reader fails like one
            # stuck in allreduce.
            with comm.guard(f"training step {step} of epoch {epoch + 1}"):
                batch = next(batches)
                optimizer.zero_grad()
                loss = loss_fn(model, train_model(batch[INPUT]), batch[TARGET], batch["negatives"],
                               batch[INPUT])
                batch_positions = int(batch[TARGET].count_nonzero())
                if tc.length_buckets > 1:
                    loss = loss * (batch_positions / mean_batch_positions)
                loss.backward()
                comm.step(model, optimizer, tc.grad_clip)
            scheduler.step()
            loss_sum += loss.item()
            positions += batch_positions
            if progress is not None:
                progress.step(loss_sum / step, positions * comm.size / (time.perf_counter() - started))
        batches.close()
        if progress is not None:
            progress.close()
        train_seconds = time.perf_counter() - started
        totals = comm.allreduce_sum(torch.tensor([loss_sum / steps, float(positions)], dtype=torch.float64))
        train_loss, positions = float(totals[0]) / comm.size, int(totals[1])
        metrics = averaged_metrics(split_ranks(model, validation, tc.eval_batch_size, cfg.evaluate.mask_seen), comm)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "validation": metrics,
                        "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - started,
                        "train_seconds": train_seconds, "target_positions": positions,
                        "positions_per_second": positions / train_seconds})
        if metrics[EARLY_STOP_METRIC] > best:
            best, best_epoch, bad_epochs = metrics[EARLY_STOP_METRIC], epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        log.info("epoch %d/%d: train loss %.4f, validation %s %.4f (best %.4f at epoch %d)",
                 epoch + 1, tc.epochs, train_loss, EARLY_STOP_METRIC, metrics[EARLY_STOP_METRIC],
                 best, best_epoch + 1)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if comm.rank == 0 and publish:
            store.save(epoch, {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best_metric": best, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "best_model": best_state, "history": history,
                "architecture": model.arch, "config": cfg.to_dict(), "model_version": version,
                "ds": ds,
            })
        comm.barrier()

    fingerprint = parameter_fingerprint(model)
    rank_fingerprints = _gather_fingerprints(fingerprint, comm)
    if len(set(rank_fingerprints)) != 1:
        raise RuntimeError(f"parameters diverged across ranks: {rank_fingerprints}")
    artifact = models_root(cfg.storage.root) / version
    if best_state is None:
        raise RuntimeError("no epoch was trained (train.epochs is 0 or the run had already ended)")
    best_metrics = next(h["validation"] for h in history if h["epoch"] == best_epoch + 1)
    calibration = {}
    if use_blend:
        scorer = LSTMRecommender(**model.arch)
        scorer.load_state_dict(best_state)
        weights, calibrated = calibrate_blend(scorer, validation, tc.eval_batch_size,
                                              cfg.evaluate.mask_seen, comm)
        best_state[BLEND_WEIGHTS] = torch.tensor(weights)
        log.info("score blend %s on validation: %s %.4f -> %.4f",
                 dict(zip(BLEND_FEATURES, weights)), EARLY_STOP_METRIC,
                 best_metrics[EARLY_STOP_METRIC], calibrated[EARLY_STOP_METRIC])
        calibration = {"blend_weights": dict(zip(BLEND_FEATURES, weights)),
                       "validation_before_blend": best_metrics}
        best_metrics = calibrated
    summary = {
        "model_version": version, "ds": ds, "item_index_version": meta.item_index_version,
        "num_items": meta.num_items, "best_epoch": best_epoch + 1, "epochs_run": len(history),
        "stopped_early": stopped_early, "early_stopping_metric": EARLY_STOP_METRIC,
        "validation": best_metrics, "history": history, "loss": loss_kind,
        "last_item_transitions": use_transitions,
        "score_blend": use_blend, **calibration,
        "world_size": comm.size, "backend": tc.backend, "feed": tc.feed, "config_hash": cfg.hash(),
    }
    if comm.rank == 0 and publish:
        final = LSTMRecommender(**model.arch)
        final.load_state_dict(best_state)

        def write(directory: Path) -> None:
            save_model(final, directory)
            cfg.save(directory / "config.yaml")
            (directory / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
            _plot_curves(history, directory / "training_curve.png")

        _publish_artifact(artifact, write)
        register(models_root(cfg.storage.root), version, best_metrics, ds=ds,
                 item_index_version=meta.item_index_version, artifact=str(artifact),
                 best_epoch=best_epoch + 1, config_hash=cfg.hash())
        log.info("model %s written to %s (validation %s %.4f)", version, artifact,
                 EARLY_STOP_METRIC, best)
    comm.barrier()
    return {"model_version": version, "artifact": str(artifact), "validation": best_metrics,
            "best_epoch": best_epoch + 1, "epochs_run": len(history), "rank": comm.rank,
            "fingerprint": fingerprint, "rank_fingerprints": rank_fingerprints}


def _warm_start_from_production(cfg: Config, model: LSTMRecommender) -> None:
    """Start from the production model's weights (every rank loads the same file)."""
    registry = load_registry(models_root(cfg.storage.root))
    version = registry["production"]
    if version is None:
        log.info("warm start: no production model yet; training from scratch")
        return
    entry = registry["versions"][version]
    warm_start(model, load_model(entry.get("artifact") or models_root(cfg.storage.root) / version))
    log.info("warm start from production model %s", version)


def _gather_fingerprints(fingerprint: str, comm: Comm) -> list[str]:
    raw = torch.tensor(list(bytes.fromhex(fingerprint)), dtype=torch.uint8)
    return [bytes(row.tolist()).hex() for row in comm.allgather(raw)]


PROGRESS_INTERVAL_S = 30.0


class BarProgress:
    """A tqdm bar, on a terminal."""

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc=desc, unit="step", leave=False)

    def step(self, loss: float, positions_per_s: float) -> None:
        # refresh=False: the bar redraws on its own interval, not once per step.
        self.bar.set_postfix(loss=f"{loss:.4f}", pos_s=f"{positions_per_s:.0f}", refresh=False)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


class LogProgress:
    """One log line per ``interval`` seconds within an epoch, when stderr is not a terminal (a
    scheduler's log file, or a Horovod rank whose stderr the launcher forwards line by line with a
    ``[rank]<stderr>:`` prefix): tqdm's carriage-return redraws would arrive there as interleaved
    fragments. Each epoch still ends with the trainer's own summary line."""

    def __init__(self, total: int, desc: str, interval: float = PROGRESS_INTERVAL_S):
        self.total, self.desc, self.interval = total, desc, interval
        self.done, self.last = 0, time.monotonic()

    def step(self, loss: float, positions_per_s: float) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            log.info("%s: step %d/%d (%d%%), loss %.4f, %.0f positions/s", self.desc, self.done, self.total,
                     100 * self.done // self.total, loss, positions_per_s)

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    import sys
    return BarProgress(total, desc) if sys.stderr.isatty() else LogProgress(total, desc)
