"""What the training loop needs from a distributed backend, for one process, Horovod and torch DDP.

The loop is written once against :class:`Comm`; only gradient averaging, state broadcast and the
few collectives differ per backend.
"""
from __future__ import annotations

import datetime as dt
import os

import torch
from torch import nn


class Comm:
    """Single process: every collective is the identity."""

    rank = 0
    size = 1

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        """The module to call for training and the optimizer to step (backend wrappers)."""
        return model, optimizer

    def sync_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Make every rank start from rank 0's parameters and optimizer state."""

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()

    def allreduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def allgather(self, values: torch.Tensor) -> torch.Tensor:
        """[size, *values.shape], row r from rank r."""
        return values.unsqueeze(0)

    def broadcast(self, values: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``values`` on every rank."""
        return values

    def barrier(self) -> None:
        """Wait for every rank."""


class HorovodComm(Comm):
    """Horovod (Gloo): DistributedOptimizer averages gradients; rank 0's state is broadcast."""

    def __init__(self, threads_per_proc: int, timeout_s: int):
        # Read by Horovod's Gloo context at init: a collective waiting on a dead peer fails after
        # this long instead of hanging the job.
        os.environ.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(timeout_s))
        import horovod.torch as hvd

        self.hvd = hvd
        hvd.init()
        torch.set_num_threads(threads_per_proc)
        self.rank, self.size = hvd.rank(), hvd.size()

    def wrap(self, model, optimizer):
        return model, self.hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())

    def sync_state(self, model, optimizer):
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    def step(self, model, optimizer, grad_clip):
        # Clip the averaged gradients: finish the allreduce first, then step without re-syncing.
        optimizer.synchronize()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        with optimizer.skip_synchronize():
            optimizer.step()

    def allreduce_sum(self, values):
        return self.hvd.allreduce(values, op=self.hvd.Sum)

    def allgather(self, values):
        return self.hvd.allgather(values.unsqueeze(0))

    def broadcast(self, values):
        return self.hvd.broadcast(values, root_rank=0)

    def barrier(self):
        self.hvd.allreduce(torch.zeros(1), op=self.hvd.Sum)


class DDPComm(Comm):
    """torch.distributed (Gloo) from the torchrun environment that TorchDistributor sets up."""

    def __init__(self, threads_per_proc: int, timeout_s: int):
        import torch.distributed as dist

        self.dist = dist
        torch.set_num_threads(threads_per_proc)
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=dt.timedelta(seconds=timeout_s))
        self.rank, self.size = dist.get_rank(), dist.get_world_size()

    def wrap(self, model, optimizer):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model), optimizer

    def sync_state(self, model, optimizer):
        # DDP broadcasts parameters when it wraps the model; every rank loads the same checkpoint,
        # so optimizer state is already equal.
        pass

    def allreduce_sum(self, values):
        values = values.clone()
        self.dist.all_reduce(values, op=self.dist.ReduceOp.SUM)
        return values

    def allgather(self, values):
        out = [torch.empty_like(values) for _ in range(self.size)]
        self.dist.all_gather(out, values.contiguous())
        return torch.stack(out)

    def broadcast(self, values):
        values = values.clone()
        self.dist.broadcast(values, src=0)
        return values

    def barrier(self):
        self.dist.barrier()

    def close(self) -> None:
        self.dist.destroy_process_group()


def make_comm(backend: str, num_proc: int, threads_per_proc: int, timeout_s: int) -> Comm:
    if backend == "single" or num_proc == 1:
        torch.set_num_threads(threads_per_proc)
        return Comm()
    if backend == "horovod":
        return HorovodComm(threads_per_proc, timeout_s)
    if backend == "ddp":
        return DDPComm(threads_per_proc, timeout_s)
    raise ValueError(f"train.backend must be horovod, ddp or single, got {backend!r}")
