"""The pinned stack works together: Spark-written Parquet -> Petastorm -> torch, and Horovod (gloo).
The card stack only (the current stack's night: tests/test_stack_current.py)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "scripts" / "hvd_lstm_sync.py"

pytestmark = pytest.mark.card_only


def test_petastorm_reads_spark_parquet_into_torch(spark, tmp_path):
    from petastorm import make_batch_reader
    from petastorm.pytorch import DataLoader

    rows = [(f"u{k}", [k, k + 1, k + 2], k % 3) for k in range(100)]
    spark.createDataFrame(rows, "user_id string, input array<int>, target int") \
        .repartition(4).write.parquet(f"file://{tmp_path / 'ds'}")
    seen = []
    with DataLoader(make_batch_reader(f"file://{tmp_path / 'ds'}", num_epochs=1,
                                      schema_fields=["input", "target"]), batch_size=32) as loader:
        for batch in loader:
            assert isinstance(batch["input"], torch.Tensor) and batch["input"].shape[1] == 3
            seen.extend(batch["input"][:, 0].tolist())
    assert sorted(seen) == list(range(100))


def _horovod_checksums(mode: str) -> list[str]:
    horovodrun = Path(sys.executable).parent / "horovodrun"
    result = subprocess.run(
        [str(horovodrun), "-np", "2", "-H", "localhost:2", "--gloo", "--start-timeout", "60",
         sys.executable, str(SCRIPT), mode], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.findall(r"rank=(\d) size=2 checksum=(\S+)", result.stdout)
    assert sorted(r for r, _ in found) == ["0", "1"], result.stdout
    return [c for _, c in found]


@pytest.mark.integration
def test_two_horovod_processes_keep_lstm_parameters_in_sync():
    synced = _horovod_checksums("broadcast")
    assert synced[0] == synced[1]
    # the twin: without broadcast + DistributedOptimizer the two ranks drift apart
    independent = _horovod_checksums("independent")
    assert independent[0] != independent[1]
