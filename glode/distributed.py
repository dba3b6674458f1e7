"""Data-parallel training over several processes launched by ``torchrun`` (or any launcher that
sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``): one process per GPU, or
several CPU processes over gloo.

Every process builds the same global batch (the same seed gives the same batch order and
masked-LM draws everywhere) and keeps every ``size``-th sentence of it; its losses are sums over
its spans divided by the global batch's span count, and the gradients are summed over the
processes before each optimiser step, so a step is the one-process step on the same global
batch up to float summation order (dropout masks, drawn per process from the seed plus the rank,
are the exception). A parameter no process computed a gradient for is left without one, as one
process leaves it. Only rank 0 scores dev and writes logs and model folders; ``together()``
keeps the others in the process group until it has, then every process leaves it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch

__all__ = ["World", "current_world", "init_from_env", "sum_gradients", "sum_floats", "together"]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes outputs and scores dev (rank 0)."""
        return self.rank == 0


def current_world() -> World:
    """The process group's rank and size once it is set up; rank 0 of 1 otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_size() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_from_env(device: torch.device) -> World:
    """Join the process group the launcher describes (nccl on CUDA, gloo otherwise); a single
    process, or one already joined, is left as it is. On CUDA ``device`` is this process's own
    GPU (``cuda:LOCAL_RANK``, glode/device.py): it becomes the current device, which nccl and
    any tensor made on plain ``cuda`` use, and the group is bound to it."""
    import torch.distributed as dist

    if launched_size() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return current_world()


@contextlib.contextmanager
def together() -> Iterator[None]:
    """Around a training run and what rank 0 does after it (scoring dev, saving the model): on
    the way out every process waits at a barrier until rank 0 is through, then leaves the process
    group that training joined, so that no process exits while rank 0 still works (nccl warns,
    and may block a peer). After an error there is no barrier (a process that failed mid-step
    would never reach it; the launcher stops the rest), only the group's end."""
    import torch.distributed as dist

    try:
        yield
    except BaseException:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        raise
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_gradients(params, world: World) -> None:
    """Sum each trainable parameter's gradient over the processes. A process whose shard left a
    part of the model unused takes part with zeros; a parameter that no process has a gradient
    for (the pooler; the masked-LM head with λ = 0) is left without one, as one process leaves
    it: a zero gradient would let AdamW's weight decay move it."""
    if world.size == 1:
        return
    import torch.distributed as dist

    params = list(params)
    if not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(has, op=dist.ReduceOp.SUM)  # how many processes have each gradient
    for p, n in zip(params, has.tolist()):
        if n == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def sum_floats(values: list[float], world: World, device: torch.device = torch.device("cpu")) -> list[float]:
    """``values`` summed over the processes (the epoch's loss sums for the logs; on ``device``,
    which nccl needs to be a GPU)."""
    if world.size == 1:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
