"""Typed settings, one object per concern of ``params.yaml``, built once from a stage's options.

Each field names its ``params.yaml`` key; its default and its allowed values are that key's
:class:`~glode.params.Param` in ``glode/params.py``, the only place either is written. A stage
builds its settings with ``from_options(locals())``; every settings object is checked when it is
made, against the same definitions the ``check`` stage uses, and a bad value is named by its
``params.yaml`` key. The library functions then take the settings object instead of a long list
of keyword arguments.

The fixed choices are enums (:data:`Projection`, :data:`Features`, ...) made from the same
definitions, so that a stage's Typer option refuses an unknown choice as a usage error.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

from glode.params import SCHEMA, check_label_sets, check_options, schedule_rounds_problem

__all__ = ["DataSettings", "ModelSettings", "TrainSettings", "DeviceSettings", "EvaluateSettings", "DenoiseSettings",
           "RetrainSettings", "Precision", "Projection", "Features", "Prototype", "PrototypeFrom", "Start", "Gate", "Index",
           "Init", "MlmVocab", "TargetLoss", "option_keys"]

S = TypeVar("S", bound="Settings")


def _setting(key: str) -> Any:
    """A dataclass field for ``params.yaml`` key ``key``, with the schema's default."""
    default = SCHEMA[key].default
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"key": key})
    return field(default=default, metadata={"key": key})


def _choices(name: str, key: str) -> type[enum.Enum]:
    """A str enum of the choices of ``key``, for a Typer option (an unknown choice is a usage error)."""
    return enum.Enum(name, [(c, c) for c in SCHEMA[key].choices], type=str, module=__name__)


Projection = _choices("Projection", "denoise.projection")
Features = _choices("Features", "denoise.features")
Prototype = _choices("Prototype", "denoise.prototype")
PrototypeFrom = _choices("PrototypeFrom", "denoise.prototype-from")
Start = _choices("Start", "denoise.start")
Gate = _choices("Gate", "denoise.gate")
Index = _choices("Index", "denoise.index")
Init = _choices("Init", "retrain.init")
TargetLoss = _choices("TargetLoss", "retrain.target-loss")
Precision = _choices("Precision", "train.precision")
MlmVocab = _choices("MlmVocab", "train.mlm-vocab")


def _plain(value: Any) -> Any:
    """An option's value as params.yaml holds it: an enum's string, a list for a tuple."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass
class Settings:
    """Base of the settings classes: building from options and the one validation."""

    #: field name -> option name where the stage's option is not called like the field
    OPTION_NAMES: ClassVar[dict[str, str]] = {}

    @classmethod
    def option_keys(cls, *names: str) -> dict[str, str]:
        """``{option name: params.yaml key}`` of the fields ``names`` (all when none are given)."""
        chosen = [f for f in fields(cls) if not names or f.name in names]
        missing = set(names) - {f.name for f in chosen}
        if missing:
            raise ValueError(f"{cls.__name__} has no fields {sorted(missing)}")
        return {cls.OPTION_NAMES.get(f.name, f.name): f.metadata["key"] for f in chosen}

    @classmethod
    def from_options(cls: type[S], options: Mapping[str, Any]) -> S:
        """The settings from a stage's options (its ``locals()``); a field whose option the stage
        does not take keeps its default."""
        values = {}
        for f in fields(cls):
            option = cls.OPTION_NAMES.get(f.name, f.name)
            if option in options:
                values[f.name] = _plain(options[option])
        return cls(**values)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field against its key's definition in glode/params.py; raises ParamError
        (one problem) or ParamsError (several), naming the params.yaml key."""
        check_options({f.name: getattr(self, f.name) for f in fields(self)},
                      {f.name: f.metadata["key"] for f in fields(self)})


def option_keys(*classes: type[Settings]) -> dict[str, str]:
    """``{option name: params.yaml key}`` of every field of ``classes``: the options DVC fills in."""
    return {opt: key for cls in classes for opt, key in cls.option_keys().items()}


@dataclass
class DataSettings(Settings):
    """What the prepare stage reads of the corpora (the file paths are its own options)."""

    labels: list[str] = _setting("data.labels")
    max_source_sentences: int = _setting("data.max-source-sentences")
    max_target_sentences: int = _setting("data.max-target-sentences")
    ignore_labels: list[str] = _setting("data.ignore-labels")

    def validate(self) -> None:
        super().validate()
        check_label_sets(self.labels, self.ignore_labels)


@dataclass
class ModelSettings(Settings):
    """The span model's shape: how long a candidate span and a sentence may be."""

    max_span_len: int = _setting("model.max-span-len")
    max_span_len_char: int = _setting("model.max-span-len-char")
    char_languages: list[str] = _setting("model.char-languages")
    max_seq_len: int = _setting("model.max-seq-len")

    def span_cap(self, target: str) -> int:
        """The longest candidate span for a target language: character-tokenised ones need more."""
        return self.max_span_len_char if target in set(self.char_languages) else self.max_span_len


@dataclass
class TrainSettings(Settings):
    """Optimisation of a training run (train_source and train_target)."""

    epochs: int | float = _setting("train.epochs")  # a fraction (retrain.epochs) trains the first part of a pass
    lr: float = _setting("train.lr")
    head_lr: float = _setting("train.head-lr")
    batch_size: int = _setting("train.batch-size")
    seed: int = _setting("train.seed")
    weight_decay: float = _setting("train.weight-decay")
    adam_beta2: float = _setting("train.adam-beta2")
    warmup_ratio: float = _setting("train.warmup-ratio")
    grad_clip: float = _setting("train.grad-clip")
    mlm_weight: float = _setting("train.mlm-weight")
    mlm_rate: float = _setting("train.mlm-rate")
    mlm_batch_size: int = _setting("train.mlm-batch-size")
    mlm_vocab: str = _setting("train.mlm-vocab")  # corpus: the MLM softmax over the MLM text's own sub-tokens
    freeze_word_embeddings: bool = _setting("train.freeze-word-embeddings")
    eval_batch_size: int = _setting("train.eval-batch-size")
    grad_accum: int = _setting("train.grad-accum")

    def recorded(self) -> dict[str, Any]:
        """What a model folder records as its ``train_params``: everything that shapes the
        weights (the dev scoring batch size does not); ``grad_accum`` and ``adam_beta2`` only where
        they are not their defaults, so that folders trained before the keys existed keep their bytes."""
        quiet_defaults = {"grad_accum": 1, "adam_beta2": SCHEMA["train.adam-beta2"].default}
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "eval_batch_size" and not (f.name in quiet_defaults and getattr(self, f.name) == quiet_defaults[f.name])}


@dataclass
class DeviceSettings(Settings):
    """Where the model runs and in what precision: every stage that runs it (training,
    initial_labels, pseudo_label, evaluate) and ``glode predict``. They do not shape what is
    learned beyond float rounding, so a model folder records them only where not the default
    (glode/device.py turns them into a device, an autocast context and a loss scaler)."""

    device: str = _setting("train.device")
    precision: str = _setting("train.precision")

    def recorded(self) -> dict[str, Any]:
        """What a model folder records of them: the precision where it is not fp32 (bf16 and
        fp16 change the weights' rounding); never the device name (auto says nothing)."""
        return {} if self.precision == "fp32" else {"precision": self.precision}


@dataclass
class EvaluateSettings(Settings):
    """Scoring a corpus with a trained model (initial_labels, pseudo_label, evaluate)."""

    batch_size: int = _setting("evaluate.batch-size")


@dataclass
class DenoiseSettings(Settings):
    """A round's span vectors (read by pseudo_label) and its denoising step (denoise)."""

    k: int = _setting("k")
    dim: int = _setting("denoise.dim")
    features: str = _setting("denoise.features")
    projection: str = _setting("denoise.projection")
    o_keep_rate: float = _setting("denoise.o-keep-rate")
    local_scale: float = _setting("denoise.local-scale")
    local_cap: float = _setting("denoise.local-cap")
    m_start: float = _setting("denoise.m-start")
    m_step: float = _setting("denoise.m-step")
    m_min: float = _setting("denoise.m-min")
    update_from: int = _setting("denoise.update-from")
    visits: float = _setting("denoise.visits")
    prototype: str = _setting("denoise.prototype")
    momentum: float = _setting("denoise.momentum")
    prototype_from: str = _setting("denoise.prototype-from")
    use_global: bool = _setting("denoise.use-global")
    use_local: bool = _setting("denoise.use-local")
    start: str = _setting("denoise.start")
    gate: str = _setting("denoise.gate")
    select: float = _setting("denoise.select")
    select_rest: float = _setting("denoise.select-rest")
    align: float = _setting("denoise.align")
    index: str = _setting("denoise.index")
    auto_threshold: int = _setting("denoise.auto-threshold")
    nprobe: int = _setting("denoise.nprobe")
    seed: int = _setting("denoise.seed")

    #: the fields that are arguments of glode.denoise.denoise under the same names
    STEP_ARGUMENTS: ClassVar[Sequence[str]] = (
        "k", "o_keep_rate", "local_scale", "local_cap", "select", "select_rest", "prototype", "prototype_from",
        "momentum", "use_global", "use_local", "gate", "seed", "index", "auto_threshold", "nprobe")

    def step_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`glode.denoise.denoise` that these settings fix."""
        return {name: getattr(self, name) for name in self.STEP_ARGUMENTS}


@dataclass
class RetrainSettings(Settings):
    """How a round's target model starts and how long it trains (train_target)."""

    OPTION_NAMES: ClassVar[dict[str, str]] = {"epochs": "retrain_epochs"}

    init: str = _setting("retrain.init")
    epochs: float = _setting("retrain.epochs")  # 0: train.epochs
    target_loss: str = _setting("retrain.target-loss")  # glode.training.TARGET_LOSSES
    harden_o: float = _setting("retrain.harden-o")  # glode.steps.train_target.target_soft_labels
    schedule_rounds: int = _setting("retrain.schedule-rounds")  # glode.training.ChainedRun

    def validate(self) -> None:
        super().validate()
        why = schedule_rounds_problem(self.schedule_rounds, self.init)
        if why:
            from glode.errors import ParamError

            raise ParamError("retrain.schedule-rounds", why)

    def train_settings(self, train: TrainSettings) -> TrainSettings:
        """``train`` with this round's epochs: ``retrain.epochs`` where set (a whole number stays
        an int, so that the model folder records it as before), else ``train.epochs``."""
        if not self.epochs > 0:
            return train
        this_round = copy.copy(train)  # not re-checked: a fraction is fine here, not in train.epochs
        this_round.epochs = int(self.epochs) if float(self.epochs).is_integer() else self.epochs
        return this_round
