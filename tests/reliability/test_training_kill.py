"""A Horovod rank killed mid-training fails the job in bounded time; --resume finishes the run."""
import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from _training_data import DS, build_dataset
from _world import env
from recsys_spark.registry import load_registry

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.card_only]  # horovodrun

VERSION = "hvd-kill"


def _train(root, *extra) -> subprocess.Popen:
    settings = dict(backend="horovod", launcher="horovodrun", num_proc=2, epochs=3, batch_size=8,
                    embedding_dim=16, hidden_size=32, warmup_steps=5, patience=5, shuffle_buffer=128,
                    eval_batch_size=256, timeout_s=30)
    args = [a for k, v in settings.items() for a in ("--set", f"train.{k}={json.dumps(v)}")]
    return subprocess.Popen([sys.executable, "-m", "recsys_spark.cli", "train", "--conf", "local", "--ds", DS,
                             "--model-version", VERSION, "--set", f"storage.root={root}", *args, *extra],
                            env=env(), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _rank(job: subprocess.Popen, rank: int) -> psutil.Process:
    for child in psutil.Process(job.pid).children(recursive=True):
        try:
            if "training.hvd_entry" in " ".join(child.cmdline()) and child.environ().get("HOROVOD_RANK") == str(rank):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no rank {rank} process under {job.pid}")


def test_killed_rank_fails_the_job_and_resume_finishes(spark, tmp_path):
    """SIGKILL of rank 1 during epoch 2 ends `recsys train` (horovodrun, 2 ranks) with a clear
    error well within train.timeout_s, publishes no model, and `--resume` continues from the
    epoch-1 checkpoint to the end."""
    build_dataset(spark, tmp_path, users=3000)
    first_checkpoint = tmp_path / "checkpoints" / VERSION / "epoch-0000.pt.sha256"
    job = _train(tmp_path)
    deadline = time.monotonic() + 240
    while not first_checkpoint.exists():
        assert job.poll() is None and time.monotonic() < deadline, job.stdout.read()[-3000:]
        time.sleep(0.05)
    _rank(job, 1).send_signal(signal.SIGKILL)
    killed = time.monotonic()
    output, _ = job.communicate(timeout=120)
    assert job.returncode != 0 and time.monotonic() - killed < 60
    assert "horovodrun exited with status" in output, output[-3000:]
    assert not (tmp_path / "checkpoints" / VERSION / "epoch-0002.pt").exists()  # it did not finish
    assert VERSION not in load_registry(tmp_path / "models")["versions"]

    resumed = _train(tmp_path, "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output[-3000:]
    assert "resumed from" in output and "epoch-0000.pt (epoch 1" in output
    assert json.loads((tmp_path / "models" / VERSION / "metrics.json").read_text())["epochs_run"] == 3
