"""Where the model runs and in what precision: the one place ``train.device`` and
``train.precision`` become a ``torch.device``, an autocast context and a gradient scaler.

Training, pseudo-labelling, evaluation and ``glode predict`` all go through these functions, so
that ``auto`` means the same device everywhere. On the CPU in fp32 nothing here touches a
tensor (no copy, no autocast), so the default run's outputs stay byte-identical.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import ContextManager

import torch

from glode.errors import ParamError
from glode.params import SCHEMA

__all__ = ["DEVICE_PATTERN", "resolve_device", "launch_processes", "autocast", "grad_scaler", "check_precision",
           "model_device", "place_model", "loss_scaler"]

#: what ``train.device`` may name (its schema in glode/params.py; whether it exists is checked here)
DEVICE_PATTERN = SCHEMA["train.device"].pattern


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` for ``train.device``: ``auto`` picks CUDA, then Apple's MPS, then
    the CPU; a named accelerator that this machine lacks is an error naming the key (falling
    back silently would turn a GPU run into a days-long CPU run). Under a launcher that starts
    several processes (``WORLD_SIZE`` > 1) see :func:`_launched_device`."""
    if not re.fullmatch(DEVICE_PATTERN, name):
        raise ParamError("train.device", f"{name!r} is not allowed; expected {SCHEMA['train.device'].allowed()}")
    processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if processes > 1:
        launched = _launched_device(name, processes)
        if launched is not None:
            return launched
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParamError("train.device", f"{name!r}: this machine has no CUDA device (torch "
                             f"{torch.__version__}); use auto or cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ParamError("train.device", f"{name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if name == "mps" and not _mps_available():
        raise ParamError("train.device", "'mps': this machine has no Apple MPS device; use auto or cpu")
    return torch.device(name)


def _launched_device(name: str, processes: int) -> torch.device | None:
    """The device of one of ``processes`` launched processes (torchrun), or None where the
    one-process rules apply (the CPU). Each process takes its own GPU, ``cuda:LOCAL_RANK``; what
    would put two processes on one GPU (nccl then fails at the first collective), or on MPS
    (gloo cannot reduce MPS tensors), is refused here, before any process group exists."""
    cuda = name in ("auto", "cuda") and torch.cuda.is_available()
    if name.startswith("cuda:"):
        raise ParamError("train.device", f"{name!r} names one GPU for all {processes} launched processes "
                         "(WORLD_SIZE); use cuda or auto: each process then takes cuda:LOCAL_RANK")
    if name in ("auto", "mps") and not cuda and _mps_available():
        raise ParamError("train.device", f"{name!r} means Apple MPS here, and {processes} launched processes "
                         "(WORLD_SIZE) cannot sum gradients on MPS (gloo reduces CPU tensors only); use cpu, "
                         "or train as one process")
    if not cuda:
        return None
    local = os.environ.get("LOCAL_RANK", "")
    if not local.strip().isdigit():
        raise ParamError("train.device", f"{name!r} with {processes} launched processes (WORLD_SIZE) needs "
                         f"LOCAL_RANK (got {local!r}) to give each process its own GPU; launch with torchrun, "
                         "which sets it")
    index, count = int(local), torch.cuda.device_count()
    if index >= count:
        raise ParamError("train.device", f"{name!r}: LOCAL_RANK {index} but only {count} CUDA device(s) here; "
                         f"launch at most {count} process(es) per machine (torchrun --nproc_per_node)")
    return torch.device("cuda", index)


def launch_processes(processes: int, device: str) -> int:
    """How many data-parallel training processes ``train.processes`` asks for with ``train.device``
    on this machine: N, or for 0 one per CUDA device where the model runs on CUDA (``auto`` or
    ``cuda``) and 1 elsewhere. What cannot work is refused before anything starts, naming the key:
    several processes on one named GPU (``cuda:N``), more processes than GPUs, or on Apple MPS
    (gloo sums CPU tensors only); any number trains on the CPU (gloo)."""
    if processes == 1:
        return 1
    where = resolve_device(device)
    if processes == 0:
        return torch.cuda.device_count() if where.type == "cuda" and ":" not in device else 1
    if where.type == "cuda" and ":" in device:
        raise ParamError("train.processes", f"{processes} processes each need their own GPU, and train.device "
                         f"{device!r} names one; use cuda or auto, or 1 process")
    if where.type == "mps":
        raise ParamError("train.processes", f"{processes} processes cannot sum gradients on Apple MPS (train.device "
                         f"{device!r}; gloo reduces CPU tensors only); use train.device cpu, or 1 process")
    if where.type == "cuda" and processes > torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ParamError("train.processes", f"{processes} processes on CUDA need a GPU each, and this machine has "
                         f"{count}; use at most {count}, or 0 for one per GPU")
    return processes


def check_precision(device: torch.device, precision: str) -> None:
    """fp16 needs CUDA (its loss scaler is CUDA's); bf16 runs on CUDA or the CPU; fp32 anywhere."""
    if precision == "fp16" and device.type != "cuda":
        raise ParamError("train.precision", f"fp16 needs a CUDA device, the model runs on {device}; use bf16 "
                         "(CUDA or CPU) or fp32")
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise ParamError("train.precision", f"bf16 runs on CUDA or the CPU, the model runs on {device}; use fp32")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ParamError("train.precision", f"{precision!r} is not allowed; expected one of fp32, bf16, fp16")


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The forward passes' precision: ``torch.autocast`` for bf16/fp16, nothing for fp32."""
    check_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str):
    """A loss scaler for fp16 on CUDA (small gradients underflow in fp16), else None."""
    check_precision(device, precision)
    if precision != "fp16":
        return None
    return loss_scaler(device)


def loss_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler on ``device`` whose scale exists from the start. ``GradScaler`` makes its
    scale at the first ``scale(loss)``; a data-parallel process whose micro-batches before the
    first optimiser step all shard to nothing never scales a loss, and its ``unscale_``/``step``
    would assert while the other processes wait for it in the gradient sum."""
    scaler = torch.amp.GradScaler(device.type)
    scaler.scale(torch.zeros((), device=device))  # creates the scale (and its growth tracker) on device
    return scaler


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's weights are on (scoring moves each batch there)."""
    return next(model.parameters()).device


def place_model(model: torch.nn.Module, device: str, precision: str) -> torch.device:
    """Move ``model`` to the device ``train.device`` names (no copy when it is there already)
    after checking that ``train.precision`` runs there; returns the device."""
    where = resolve_device(device)
    check_precision(where, precision)
    if model_device(model) != where:
        model.to(where)
    return where
