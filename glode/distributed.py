"""Data-parallel training: one process per GPU, or several CPU processes over gloo, started by
:func:`launch_workers` for ``train.processes`` > 1 (``torch.distributed``'s elastic launcher, what
``torchrun`` runs) or by any launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``.

Every process builds the same global batch (the same seed gives the same batch order and
masked-LM draws everywhere) and keeps every ``size``-th sentence of it; its losses are sums over
its spans divided by the global batch's span count, times the number of processes, and
PyTorch's ``DistributedDataParallel`` averages the gradients over the processes during the
backward pass (in buckets, overlapping it), so a step is the one-process step on the same global
batch up to float summation order (dropout masks, drawn per process from the seed plus the rank,
are the exception). A parameter no process computed a gradient for is left without one, as one
process leaves it (``find_unused_parameters``). Only rank 0 scores dev and writes logs and model
folders; ``together()`` keeps the others in the process group until it has, then every process
leaves it.

The stages that run the model without training (``initial_labels``, ``pseudo_label@rN``,
``evaluate@M``) and ``glode predict`` relaunch themselves the same way and score inside
:func:`sharded_scoring`: there each ``glode.scoring.score_spans`` call splits its length-sorted
batches over the processes (rank r takes batches r, r+N, ...) and gathers the results on every
process (:func:`all_gather`), so the scores are one process's; rank 0 alone writes the outputs.
Outside it (training's dev scoring, which rank 0 does alone) scoring stays local.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from glode.errors import GlodeError

__all__ = ["World", "current_world", "init_from_env", "launch_workers", "data_parallel", "sum_floats", "together",
           "sharded_scoring", "scoring_world", "all_gather", "rank_output"]


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

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


def data_parallel(module: torch.nn.Module, device: torch.device) -> torch.nn.parallel.DistributedDataParallel:
    """``module`` (one step's loss as one forward pass: DDP prepares the gradient reduction of what
    a forward call used) under ``DistributedDataParallel``: its gradients are averaged over the
    processes in the backward pass of every forward call outside ``no_sync()``. A parameter that
    this process's call left unused takes part with zeros, one that no process used keeps no
    gradient (``find_unused_parameters``: the pooler; the masked-LM head with λ = 0; a process
    whose shard is empty). Buffers are not broadcast at each call: the span model's are constants."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True, forward_sync_buffers=False)


def sum_floats(values: list[float], world: World, device: torch.device = torch.device("cpu")) -> list[float]:
    """``values`` summed over the processes (the epoch's loss sums for the logs; on ``device``,
    which nccl needs to be a GPU)."""
    if world.size == 1:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def launched_rank() -> int:
    """This process's rank among the launched ones (``RANK``; 0 without a launcher)."""
    return int(os.environ.get("RANK", "0") or 0)


def launch_workers(processes: int, device: str, role: str = "training", key: str = "train.processes") -> bool:
    """Run this stage's command line as ``processes`` data-parallel processes (``train.processes``;
    0: one per GPU, :func:`glode.device.launch_processes`) under ``torch.distributed``'s elastic
    launcher, the engine of ``torchrun``, on this machine, and wait for them. True when they ran
    and succeeded (the caller is done); False where this process is to do the work itself: one
    process, or one of those a launcher started.

    A failed process stops the others; the failure becomes one GlodeError naming the process (a
    ``role`` process, e.g. ``scoring``) and how it ended, and the option ``key`` that asked for it
    (after the process's own message, if it wrote one). Ctrl-C or SIGTERM reaches every process, whose
    atomic writers remove their partial outputs, and this one exits with 130 or 143. Each process
    gets an equal share of the CPU cores (``OMP_NUM_THREADS``, unless it is set)."""
    if launched_size() > 1:
        return False
    from glode.device import launch_processes

    n = launch_processes(processes, device)
    if n == 1:
        return False
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in list(logging.root.manager.loggerDict):  # the agent's notes on what it stops: our one line says it
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // n)))
    with tempfile.TemporaryDirectory(prefix="glode-launch-") as logs:
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=str(uuid.uuid4()),
                              rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # torchrun --standalone
                              max_restarts=0, logs_specs=DefaultLogsSpecs(log_dir=logs))
        try:
            # the command line as Python got it (``-m glode.cli predict ...`` too, where sys.argv[0] is a file path)
            elastic_launch(config, sys.executable)(*getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:])
        except ChildFailedError as exc:
            rank, failure = min(exc.failures.items(), key=lambda item: (
                item[1].exitcode <= 0, item[1].exitcode == -signal.SIGTERM, item[1].timestamp, item[0]))
            how = f"was killed by {_signal_name(-failure.exitcode)}" if failure.exitcode < 0 else \
                f"exited with status {failure.exitcode}; its own message is above,"
            raise GlodeError(f"{role} process {rank} of {n} ({key}) {how} and the other processes were "
                             "stopped") from None
        except SignalException as exc:
            print(f"{'interrupted' if exc.sigval == signal.SIGINT else 'terminated'}; the {n} {role} processes "
                  "were stopped and removed their partial outputs", file=sys.stderr)
            raise SystemExit(128 + int(exc.sigval)) from None
    return True


_sharded = False  # inside sharded_scoring(): score_spans calls are collective


@contextlib.contextmanager
def sharded_scoring(device: str) -> Iterator[World]:
    """Around what a scoring stage (or ``glode predict``) does in one of the processes that
    :func:`launch_workers` started: join their process group (the device ``train.device`` names
    for this process: ``cuda:LOCAL_RANK`` on CUDA), make every ``score_spans`` call inside
    collective (:func:`scoring_world`), and on the way out wait until rank 0 has written its
    outputs, then leave the group (:func:`together`). Every process must make the same
    ``score_spans`` calls in the same order, on the same sentences (each call gathers); only
    rank 0 (``World.main``) writes. In a single process nothing changes."""
    global _sharded
    if launched_size() == 1:
        yield World()
        return
    from glode.device import resolve_device

    world = init_from_env(resolve_device(device))
    _sharded = True
    try:
        with together():
            yield world
    finally:
        _sharded = False


def scoring_world() -> World:
    """The processes a ``score_spans`` call splits its batches over: the process group inside
    :func:`sharded_scoring`; this process alone elsewhere (training scores dev on rank 0 alone,
    where a collective call would wait for the others forever)."""
    return current_world() if _sharded else World()


def all_gather(items: list, world: World) -> list:
    """Every process's ``items`` (picklable: numpy arrays travel bit for bit), concatenated in
    rank order, on every process (``all_gather_object``: gloo, or nccl through this process's
    GPU); ``items`` itself in a single process."""
    if world.size == 1:
        return list(items)
    import torch.distributed as dist

    parts: list = [None] * world.size
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


@contextlib.contextmanager
def rank_output(path: str | os.PathLike) -> Iterator[Path]:
    """Where this process writes an output folder or file that rank 0 alone may write, for a step
    that writes it itself: ``path`` on rank 0 (and in a single process); on the other ranks a
    throwaway path of the same name in a temporary folder (under ``TMPDIR``) that is removed
    afterwards, so that they never create or remove ``path``."""
    path = Path(path)
    world = current_world()
    if world.main:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"glode-rank{world.rank}-") as scratch:
        yield Path(scratch) / path.name


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
