"""What the training loop needs from a distributed backend, for one process, Horovod and torch DDP.

The loop is written once against :class:`Comm`; only gradient averaging, state broadcast and the
few collectives differ per backend.

A rank whose peer died or hangs would otherwise wait in a collective forever: Horovod's negotiation
does not honour HOROVOD_GLOO_TIMEOUT_SECONDS (a rank blocked 5 minutes on a sleeping peer in our
tests), so multi-rank backends run a :class:`Watchdog` that ends the process with a clear message
when one collective or training step outlasts ``train.timeout_s``; the launcher then fails the job.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import threading
import time

import torch
from torch import nn

log = logging.getLogger(__name__)

WATCHDOG_EXIT_CODE = 75


class Watchdog:
    """Exits this process when a guarded call runs longer than ``timeout_s``."""

    def __init__(self, timeout_s: float, rank: int):
        self.timeout_s, self.rank = timeout_s, rank
        self._since: float | None = None
        self._what = ""
        threading.Thread(target=self._watch, name="training-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def guard(self, what: str):
        self._since, self._what = time.monotonic(), what
        try:
            yield
        finally:
            self._since = None

    def _watch(self) -> None:
        while True:
            time.sleep(min(5.0, self.timeout_s / 4))
            since = self._since
            if since is not None and time.monotonic() - since > self.timeout_s:
                message = (f"rank {self.rank}: {self._what} has not finished after {self.timeout_s:.0f}s "
                           "(train.timeout_s); a peer rank is dead or hung - failing the job")
                log.error(message)
                print(message, file=sys.stderr, flush=True)
                os._exit(WATCHDOG_EXIT_CODE)


class Comm:
    """Single process: every collective is the identity."""

    rank = 0
    size = 1

    def guard(self, what: str):
        """Context for a call that needs every rank (bounded by the watchdog where there is one)."""
        return contextlib.nullcontext()

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

    def close(self) -> None:
        """Release what the backend set up for this process (its process group)."""


class HorovodComm(Comm):
    """Horovod (Gloo): DistributedOptimizer averages gradients; rank 0's state is broadcast."""

    def __init__(self, threads_per_proc: int, timeout_s: int):
        # Read by Horovod's Gloo context at init; it bounds Gloo's own connects and transfers, but
        # not Horovod's negotiation of a collective, which the watchdog covers.
        os.environ.setdefault("HOROVOD_GLOO_TIMEOUT_SECONDS", str(timeout_s))
        import horovod.torch as hvd

        self.hvd = hvd
        hvd.init()
        torch.set_num_threads(threads_per_proc)
        self.rank, self.size = hvd.rank(), hvd.size()
        self.guard = Watchdog(timeout_s, self.rank).guard

    def wrap(self, model, optimizer):
        return model, self.hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())

    def sync_state(self, model, optimizer):
        with self.guard("broadcast of rank 0's state"):
            self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
            # On a fresh start the state is empty everywhere; Horovod would fill it with a dummy
            # optimizer step first, which changes Adam's step count relative to other backends.
            if optimizer.state_dict()["state"]:
                self.hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    def step(self, model, optimizer, grad_clip):
        # Clip the averaged gradients: finish the allreduce first, then step without re-syncing.
        optimizer.synchronize()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        with optimizer.skip_synchronize():
            optimizer.step()

    def allreduce_sum(self, values):
        with self.guard("allreduce"):
            return self.hvd.allreduce(values, op=self.hvd.Sum)

    def allgather(self, values):
        with self.guard("allgather"):
            return self.hvd.allgather(values.unsqueeze(0))

    def broadcast(self, values):
        with self.guard("broadcast"):
            return self.hvd.broadcast(values, root_rank=0)

    def barrier(self):
        with self.guard("barrier"):
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
        self.guard = Watchdog(timeout_s, self.rank).guard

    def wrap(self, model, optimizer):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model), optimizer

    def sync_state(self, model, optimizer):
        # DDP broadcasts parameters when it wraps the model; every rank loads the same checkpoint,
        # so optimizer state is already equal.
        pass

    def allreduce_sum(self, values):
        values = values.clone()
        with self.guard("allreduce"):
            self.dist.all_reduce(values, op=self.dist.ReduceOp.SUM)
        return values

    def allgather(self, values):
        out = [torch.empty_like(values) for _ in range(self.size)]
        with self.guard("allgather"):
            self.dist.all_gather(out, values.contiguous())
        return torch.stack(out)

    def broadcast(self, values):
        values = values.clone()
        with self.guard("broadcast"):
            self.dist.broadcast(values, src=0)
        return values

    def barrier(self):
        with self.guard("barrier"):
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
