"""Launchers: one worker function, :func:`train_worker`, run by every backend.

* ``backend=horovod, launcher=spark``: ``horovod.spark.run`` puts one rank in each of ``num_proc``
  Spark tasks of the job's session (the library never creates a SparkSession).
* ``backend=horovod, launcher=horovodrun``: ``horovodrun -np N -H localhost:N`` runs
  ``python -m training.hvd_entry`` outside Spark.
* ``backend=ddp``: torch DDP over Gloo, started by ``TorchDistributor(local_mode=True)``.
* ``backend=single`` or ``num_proc=1``: in this process.

Every rank reads its Petastorm shard and the storage root directly, so ``storage.root`` must be a
filesystem all ranks share. A dead or hung rank fails the job after ``train.timeout_s`` instead of
leaving the survivors blocked in allreduce forever: it bounds worker start-up (start_timeout), Gloo
(HOROVOD_GLOO_TIMEOUT_SECONDS, the DDP process group timeout) and, through each rank's watchdog
(:class:`training.comm.Watchdog`), every collective and training step.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

from recsys_spark.config import Config, ConfigError, TrainConfig
from training.comm import make_comm
from training.trainer import config_from_dict, train

log = logging.getLogger(__name__)


# Petastorm 0.12 imports pyarrow.filesystem and ParquetDatasetPiece, which pyarrow 15 removed.
FIRST_PYARROW_WITHOUT_PETASTORM = (15, 0)


def installed_version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def stack_conflicts(tc: TrainConfig, version: Callable[[str], Optional[str]] = installed_version) -> list[str]:
    """What ``train.feed`` and ``train.backend`` ask for that this environment cannot run, each with
    the alternative (the `current` stack has pyarrow >= 15 and neither Petastorm nor Horovod)."""
    conflicts = []
    if tc.feed == "petastorm":
        pyarrow = version("pyarrow")
        if version("petastorm") is None:
            conflicts.append("train.feed=petastorm: Petastorm is not installed in this environment; "
                             "set train.feed=arrow")
        elif pyarrow and tuple(int(p) for p in pyarrow.split(".")[:2]) >= FIRST_PYARROW_WITHOUT_PETASTORM:
            conflicts.append(f"train.feed=petastorm: Petastorm needs pyarrow < 15 and this environment has "
                             f"pyarrow {pyarrow} (the current stack); set train.feed=arrow")
    if tc.backend == "horovod" and version("horovod") is None:
        conflicts.append("train.backend=horovod: Horovod is not installed in this environment (the card "
                         "stack builds it with scripts/install_horovod.sh; the current stack has none); "
                         "set train.backend=ddp")
    return conflicts


def check_stack(tc: TrainConfig, version: Callable[[str], Optional[str]] = installed_version) -> None:
    """Refuse, before any work, a feed or backend this environment cannot run, and a batching no
    environment can (the feed would only find it once the ranks are up)."""
    conflicts = stack_conflicts(tc, version)
    if tc.length_buckets < 1:
        conflicts.append(f"train.length_buckets must be at least 1, got {tc.length_buckets}")
    if conflicts:
        raise ConfigError("; ".join(conflicts))


def needs_spark(cfg: Config) -> bool:
    tc = cfg.train
    if tc.backend == "single" or tc.num_proc == 1:
        return False
    return tc.backend == "ddp" or (tc.backend == "horovod" and tc.launcher == "spark")


def train_worker(cfg_dict: dict[str, Any], ds: str, resume: bool = False,
                 model_version: Optional[str] = None) -> dict[str, Any]:
    """One rank of a training run (any backend); the config travels as a plain dict."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_dict(cfg_dict)
    tc = cfg.train
    comm = make_comm(tc.backend, tc.num_proc, tc.threads_per_proc, tc.timeout_s)
    try:
        return train(cfg, ds, comm, resume=resume, model_version=model_version)
    finally:
        comm.close()


def launch(cfg: Config, ds: str, spark=None, resume: bool = False,
           model_version: Optional[str] = None) -> dict[str, Any]:
    """Run training with the configured backend; returns rank 0's result (see ``trainer.train``).

    Raises if the ranks finished with different parameters.
    """
    tc = cfg.train
    args = (cfg.to_dict(), ds, resume, model_version)
    if tc.backend == "single" or tc.num_proc == 1:
        results = [train_worker(*args)]
    elif tc.backend == "horovod" and tc.launcher == "spark":
        _require(spark, "horovod.spark.run")
        import horovod.spark

        env = {**os.environ, "HOROVOD_GLOO_TIMEOUT_SECONDS": str(tc.timeout_s)}
        # verbose=0: at 1 Horovod's rendezvous server logs every key a rank puts ("scope global has
        # keys ...", ~40 lines per run) on the root logger; failures still raise with their output.
        log.info("launching %d Horovod ranks as Spark tasks", tc.num_proc)
        results = horovod.spark.run(train_worker, args=args, num_proc=tc.num_proc,
                                    start_timeout=tc.timeout_s, env=env, verbose=0)
    elif tc.backend == "horovod" and tc.launcher == "horovodrun":
        results = _run_horovodrun(cfg, ds, resume, model_version)
    elif tc.backend == "ddp":
        _require(spark, "TorchDistributor")
        from pyspark.ml.torch.distributor import TorchDistributor

        distributor = TorchDistributor(num_processes=tc.num_proc, local_mode=True, use_gpu=False)
        results = [distributor.run(train_worker, *args)]
    else:
        raise ValueError(f"unsupported train.backend={tc.backend!r} with train.launcher={tc.launcher!r} "
                         "(horovod+spark, horovod+horovodrun, ddp, single)")
    result = min(results, key=lambda r: r["rank"])
    fingerprints = {r["fingerprint"] for r in results} | set(result["rank_fingerprints"])
    if len(fingerprints) != 1:
        raise RuntimeError(f"ranks finished with different parameters: {sorted(fingerprints)}")
    return result


def _require(spark, what: str) -> None:
    if spark is None:
        raise ValueError(f"{what} needs the job's SparkSession: pass spark= (jobs/train.py does)")


def _run_horovodrun(cfg: Config, ds: str, resume: bool, model_version: Optional[str]) -> list[dict]:
    tc = cfg.train
    horovodrun = shutil.which("horovodrun", path=str(Path(sys.executable).parent)) or "horovodrun"
    with tempfile.TemporaryDirectory(prefix="recsys-hvd-") as tmp:
        conf = Path(tmp) / "config.yaml"
        cfg.save(conf)
        command = [horovodrun, "-np", str(tc.num_proc), "-H", f"localhost:{tc.num_proc}", "--gloo",
                   "--start-timeout", str(tc.timeout_s), "--gloo-timeout-seconds", str(tc.timeout_s),
                   sys.executable, "-m", "training.hvd_entry", "--conf", str(conf), "--ds", ds,
                   "--result-dir", tmp]
        if resume:
            command.append("--resume")
        if model_version:
            command += ["--model-version", model_version]
        log.info("launching %s", " ".join(command))
        completed = subprocess.run(command, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"horovodrun exited with status {completed.returncode} (see the ranks' "
                               "output above; a dead rank fails the others after train.timeout_s)")
        return [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("rank-*.json"))]
