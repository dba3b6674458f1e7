"""Data-parallel training over several processes launched by ``torchrun`` (or any launcher that
sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``): one process per GPU, or
several CPU processes over gloo.

Every process builds the same global batch (the same seed gives the same batch order and
masked-LM draws everywhere) and keeps every ``size``-th sentence of it; its losses are sums over
its spans divided by the global batch's span count, and the gradients are summed over the
processes before each optimiser step, so a step is the one-process step on the same global
batch up to float summation order (dropout masks, drawn per process, are the exception). Only
rank 0 scores dev and writes logs and model folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["World", "current_world", "init_from_env", "sum_gradients", "sum_floats"]


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
    process, or one already joined, is left as it is."""
    import torch.distributed as dist

    if launched_size() > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return current_world()


def sum_gradients(params, world: World) -> None:
    """Sum each trainable parameter's gradient over the processes (a missing one counts as zero,
    so that a process whose shard left a part of the model unused still takes part)."""
    if world.size == 1:
        return
    import torch.distributed as dist

    for p in params:
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
