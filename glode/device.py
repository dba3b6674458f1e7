"""Where the model runs and in what precision: the one place ``train.device``,
``train.precision`` (training) and ``evaluate.precision`` (the scoring stages and ``glode
predict``) become a ``torch.device``, an autocast context, a gradient scaler or an int8 model.

Training, pseudo-labelling, evaluation and ``glode predict`` all go through these functions, so
that ``auto`` means the same device everywhere. On the CPU in fp32 nothing here touches a
tensor (no copy, no autocast), so the default run's outputs stay byte-identical.

Precisions: fp32; bf16 and fp16 run the forward passes under ``torch.autocast``; int8 (scoring
only) replaces most of the encoder's linear layers by dynamically quantised ones
(:func:`quantize_int8`) and runs the rest in fp32. ``auto`` (scoring only; ``glode predict``'s
default) is bf16 where the device runs it natively and fp32 elsewhere (:func:`resolve_precision`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import warnings
from typing import ContextManager, Iterable

import torch

from glode.errors import ParamError
from glode.params import SCHEMA
from glode.settings import DeviceSettings

__all__ = ["DEVICE_PATTERN", "PRECISIONS", "resolve_device", "launch_processes", "autocast", "grad_scaler",
           "check_precision", "model_device", "place_model", "loss_scaler", "quantize_int8", "scoring_device",
           "native_bf16", "resolve_precision"]

#: what ``train.device`` may name (its schema in glode/params.py; whether it exists is checked here)
DEVICE_PATTERN = SCHEMA["train.device"].pattern
#: every precision a model can run in here; ``train.precision`` declares the first three (training
#: cannot run int8), ``evaluate.precision`` all four
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix products in hardware: a CUDA GPU that supports bf16, or a
    CPU with AVX-512 BF16 or AMX (torch's own CPU probes). Elsewhere autocast emulates bf16 and is
    slower than fp32."""
    if device.type == "cuda":  # torch's default also counts a GPU that emulates bf16
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def resolve_precision(device: torch.device, precision: str) -> str:
    """``auto``: bf16 where ``device`` runs it natively (:func:`native_bf16`), fp32 elsewhere.
    Scoring in bf16 moved test F1 by at most 0.09 points from fp32 on 14 trained models (de and
    ar, three seeds; docs/BENCHMARKS.md) in 0.4-0.6x the CPU time. Any other precision is itself."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def check_precision(device: torch.device, precision: str, key: str = "train.precision") -> None:
    """fp16 needs CUDA (its loss scaler is CUDA's); bf16 runs on CUDA or the CPU; int8 on the CPU
    (torch's dynamically quantised linear layers have CPU kernels only); fp32 anywhere; ``auto``
    is checked as what it resolves to. Errors name ``key``: ``train.precision``, or
    ``evaluate.precision`` for scoring."""
    precision = resolve_precision(device, precision)
    if precision not in PRECISIONS:
        allowed = SCHEMA[key].choices if key in SCHEMA and SCHEMA[key].choices else PRECISIONS
        raise ParamError(key, f"{precision!r} is not allowed; expected one of {', '.join(allowed)}")
    if precision == "fp16" and device.type != "cuda":
        raise ParamError(key, f"fp16 needs a CUDA device, the model runs on {device}; use bf16 "
                         "(CUDA or CPU) or fp32")
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise ParamError(key, f"bf16 runs on CUDA or the CPU, the model runs on {device}; use fp32")
    if precision == "int8":
        if device.type != "cpu":
            raise ParamError(key, f"int8 (dynamic quantisation) runs on the CPU, the model runs on {device}; use "
                             "fp32, bf16 or fp16 there, or train.device: cpu")
        if torch.backends.quantized.engine == "none" or _quantize_dynamic() is None:
            raise ParamError(key, f"int8: this torch ({torch.__version__}) has no dynamic quantisation for this CPU "
                             f"(engines: {torch.backends.quantized.supported_engines}); use fp32 or bf16")


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The forward passes' precision: ``torch.autocast`` for bf16/fp16, nothing for fp32 and for
    int8 (whose quantised layers are in the model, :func:`quantize_int8`)."""
    check_precision(device, precision)
    if precision in ("fp32", "int8"):
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str):
    """A loss scaler for fp16 on CUDA (small gradients underflow in fp16), else None."""
    check_precision(device, precision)
    if precision == "int8":
        raise ParamError("train.precision", "int8 scores only (its quantised layers have no gradients); train in "
                         "fp32, bf16 or fp16 and score in int8 with evaluate.precision")
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
    after checking that ``precision`` runs there; int8 quantises its encoder (:func:`quantize_int8`,
    for scoring only). Returns the device."""
    where = resolve_device(device)
    check_precision(where, precision)
    if model_device(model) != where:
        model.to(where)
    if precision == "int8":
        quantize_int8(model)
    return where


def _quantize_dynamic():
    """``torch.ao.quantization.quantize_dynamic`` and its per-channel config, or None where this
    torch has dropped them (deprecated since torch 2.10 in favour of torchao)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:
        return None
    return quantize_dynamic, per_channel_dynamic_qconfig


def quantize_int8(model: torch.nn.Module, layers: Iterable[str] | None = None) -> torch.nn.Module:
    """Dynamic int8 quantisation of the encoder's linear layers, in place: weights stored as int8
    with one scale per output channel, each batch's activations quantised on the fly with one
    range, the products in int8 (torch's engine for this CPU: fbgemm/x86 or qnnpack).

    The feed-forward blocks' down projections (in_features > out_features: BERT's and XLM-R's
    ``output.dense``) stay fp32: their input, the GELU activations, holds a few outliers that one
    int8 range per batch cannot hold. Quantising them too cost 2.8 and 5.2 F1 points on the de and
    ar test sets, leaving them 0.7 and 1.0 (docs/BENCHMARKS.md, "Scoring precision"). The span
    head, embeddings, layer norms and attention's softmax stay fp32 as well. A model quantised
    once is left as it is; training cannot run on it (no gradients). ``layers`` names other
    modules of the encoder to quantise instead (bench/int8_layers.py compares such sets)."""
    quantize, qconfig = _quantize_dynamic()
    if layers is None:
        layers = [name for name, m in model.encoder.named_modules()
                  if type(m) is torch.nn.Linear and m.in_features <= m.out_features]
    chosen = {name: qconfig for name in layers}
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notes are not the user's business
        warnings.simplefilter("ignore")
        quantize(model.encoder, chosen, dtype=torch.qint8, inplace=True)
    return model


def scoring_device(device: DeviceSettings, precision: str) -> DeviceSettings:
    """The device settings that the scoring stages and ``glode predict`` run a model with:
    ``train.device`` and ``evaluate.precision``, which is checked here against that device,
    naming the key; ``auto`` is resolved here, once. The copy's precision may be int8, a scoring
    precision that ``train.precision`` does not declare, so it is not re-checked as one."""
    where = resolve_device(device.device)
    scoring = copy.copy(device)
    scoring.precision = resolve_precision(where, precision)
    check_precision(where, scoring.precision, "evaluate.precision")
    return scoring
