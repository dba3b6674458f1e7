"""The schema of ``params.yaml`` and the up-front check of the whole file.

One definition per key (type, allowed values, default equal to the committed params.yaml),
so that a bad value is found in a second by the pipeline's first stage (``check``) or by
``glode check``, instead of minutes later inside the stage that reads it. The stages read
their options into the settings of ``glode/settings.py``, whose defaults are these and which
check their values against the same definitions (:func:`check_options`), so the file check and
the stages cannot drift apart (``tests/test_params.py`` checks that property). The default of
every key, and the check of its value, are written here and nowhere else.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glode.errors import GlodeError, ParamError

__all__ = ["Param", "SCHEMA", "DEFAULTS", "check_options", "check_params", "check_file", "check_label_sets",
           "section_keys", "ParamsError", "load_file", "param_notes"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_SEED_MAX = 2**32 - 1  # numpy's seed range


@dataclass(frozen=True)
class Param:
    """One params.yaml key: its type, default and allowed values."""

    key: str
    type: type  # int, float, bool, str or list (of str)
    default: Any
    lo: float | None = None  # lower bound, inclusive unless lo_open
    lo_open: bool = False
    hi: float | None = None  # upper bound, inclusive unless hi_open
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    nonempty: str = ""  # lists that must not be empty: why (DVC drops an empty list option)
    pattern: str | None = None  # strings: a regular expression the whole value must match ...
    pattern_text: str = ""  # ... and how the error describes it

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


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else str(x)


def _is_type(value: Any, t: type) -> bool:
    if t is float:  # an integer is a fine number; true/false is not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:  # 3.0 is read as 3 by the stages; 1e+16 and beyond are not (DVC writes them so)
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer() and abs(value) < 1e16)
    return isinstance(value, t)


_PARAMS = [
    Param("k", int, 300, lo=1),
    Param("target", str, "de"),
    Param("data.source-train", str, "data/en/train.txt"),
    Param("data.source-dev", str, "data/en/dev.txt"),
    Param("data.labels", list, ["PER", "ORG", "LOC"],
          nonempty="a non-empty list: the entity label set is empty; list the entity types, e.g. [PER, ORG, LOC]"),
    Param("data.max-source-sentences", int, 0, lo=0),
    Param("data.max-target-sentences", int, 0, lo=0),
    Param("data.ignore-labels", list, []),
    Param("encoder.name", str, "embedded"),
    Param("model.max-span-len", int, 4, lo=1),
    Param("model.max-span-len-char", int, 10, lo=1),
    Param("model.char-languages", list, ["zh"],
          nonempty="a non-empty list: DVC passes nothing for an empty list, so the stage would fall back to [zh]; "
          "to have no character-tokenised target, list a code that is never a target, e.g. [none]"),
    Param("model.max-seq-len", int, 128, lo=3),
    Param("train.epochs", int, 3, lo=1),
    Param("train.lr", float, 5e-5, lo=0, lo_open=True, hi=1),
    Param("train.head-lr", float, 1e-3, lo=0, lo_open=True, hi=1),
    Param("train.batch-size", int, 16, lo=1),
    Param("train.seed", int, 0, lo=0, hi=_SEED_MAX),
    Param("train.weight-decay", float, 0.01, lo=0),
    Param("train.adam-beta2", float, 0.999, lo=0, hi=1, hi_open=True),
    Param("train.warmup-ratio", float, 0.1, lo=0, hi=1, hi_open=True),
    Param("train.grad-clip", float, 1.0, lo=0),
    Param("train.mlm-weight", float, 0.001, lo=0),
    Param("train.mlm-rate", float, 0.25, lo=0, hi=1, hi_open=True),
    Param("train.mlm-batch-size", int, 8, lo=1),
    Param("train.mlm-vocab", str, "full", choices=("full", "corpus")),
    Param("train.freeze-word-embeddings", bool, True),
    Param("train.eval-batch-size", int, 64, lo=1),
    Param("train.grad-accum", int, 1, lo=1),
    Param("train.device", str, "auto", pattern=r"auto|cpu|cuda|cuda:\d+|mps",
          pattern_text="auto, cpu, cuda, cuda:N or mps"),
    Param("train.precision", str, "fp32", choices=("fp32", "bf16", "fp16")),
    Param("evaluate.batch-size", int, 64, lo=1),
    Param("denoise.dim", int, 128, lo=0),
    Param("denoise.features", str, "model", choices=("model", "encoder")),
    Param("denoise.projection", str, "svd", choices=("svd", "random", "pca")),
    Param("denoise.o-keep-rate", float, 0.03, lo=0, hi=1),
    Param("denoise.local-scale", float, 0.9, lo=0),
    Param("denoise.local-cap", float, 1.0, lo=0, lo_open=True, hi=1),
    Param("denoise.m-start", float, 0.8, lo=0, hi=1),
    Param("denoise.m-step", float, 0.1, lo=0),
    Param("denoise.m-min", float, 0.5, lo=0, hi=1),
    Param("denoise.update-from", int, 1, lo=1),
    Param("denoise.visits", float, 1.0, lo=0, lo_open=True),
    Param("denoise.prototype", str, "mean", choices=("mean", "ema")),
    Param("denoise.momentum", float, 0.99, lo=0, hi=1, hi_open=True),
    Param("denoise.prototype-from", str, "all", choices=("all", "source")),
    # both views on by default: at the README's settings (3 epochs, WikiAnn-size targets) they beat
    # plain self-training through recall; on v3's CoNLL-size table they were level (docs/RESULTS.md).
    # `glode preset plain` turns them off
    Param("denoise.use-global", bool, True),
    Param("denoise.use-local", bool, True),
    Param("denoise.start", str, "model", choices=("model", "labels")),
    Param("denoise.gate", str, "agree", choices=("agree", "none")),
    Param("denoise.select", float, 1.0, lo=0, lo_open=True, hi=1),
    Param("denoise.select-rest", float, 0.0, lo=0, hi=1),
    Param("denoise.align", float, 0.0, lo=0),
    Param("denoise.index", str, "auto", choices=("exact", "ivf", "auto")),
    Param("denoise.auto-threshold", int, 25000, lo=1),
    Param("denoise.nprobe", int, 32, lo=1),
    Param("denoise.seed", int, 0, lo=0, hi=_SEED_MAX),
    Param("retrain.init", str, "encoder", choices=("encoder", "previous", "chain")),
    Param("retrain.epochs", float, 0.0, lo=0),
    Param("retrain.target-loss", str, "soft-ce", choices=("soft-ce", "reference")),
    Param("retrain.harden-o", float, 0.0, lo=0, hi=0.5, hi_open=True),
    Param("retrain.schedule-rounds", int, 0, lo=0),
]
SCHEMA: dict[str, Param] = {p.key: p for p in _PARAMS}
DEFAULTS: dict[str, Any] = {p.key: p.default for p in _PARAMS}
SECTIONS: dict[str, list[str]] = {}
for _key in SCHEMA:
    if "." in _key:
        SECTIONS.setdefault(_key.split(".")[0], []).append(_key.split(".", 1)[1])
SPECIAL = ("rounds", "models")  # checked as a whole: the round chain and its derived copy


class ParamsError(GlodeError):
    """Every problem found in a params file, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = list(problems)
        if len(problems) == 1:
            super().__init__(f"{source}: {problems[0]}")
        else:
            super().__init__(f"{source}: {len(problems)} bad parameters:\n  " + "\n  ".join(problems))


def _problem_line(key: str, value: Any, why: str) -> str:
    return f"{key}: {value!r} is not allowed; expected {why}"


def check_label_sets(labels: list[str], ignore_labels: list[str]) -> None:
    """``data.labels`` and ``data.ignore-labels`` must make sense together (also run by ``glode check``)."""
    labels = list(labels)
    if not labels:
        raise ParamError("data.labels", "the entity label set is empty; list the entity types, e.g. [PER, ORG, LOC]")
    both = sorted(set(labels) & set(ignore_labels))
    if both:
        raise ParamError("data.ignore-labels", f"{both} are also in data.labels; a type is either learned or ignored")
    if len(set(labels)) != len(labels) or any(not lab or lab == "O" or any(c.isspace() for c in lab) for lab in labels):
        raise ParamError("data.labels", f"{labels}: entity types must be distinct, non-empty, without spaces and not 'O'")


def schedule_rounds_problem(schedule_rounds: int, init: str) -> str | None:
    """Why ``retrain.schedule-rounds`` cannot go with ``retrain.init`` (the file check and the
    train_target stage's settings both ask), or None."""
    if schedule_rounds > 0 and init != "chain":
        return (f"{schedule_rounds} continues one optimiser over chained rounds; it needs retrain.init: chain "
                f"(got {init!r}), or 0")
    return None


def check_options(options: dict[str, Any], keys: dict[str, str]) -> None:
    """Check a stage's options against the schema: ``keys`` maps option names to params.yaml keys.

    Raises ParamError (one problem) or ParamsError (several), naming each params.yaml key."""
    problems = []
    for opt, key in keys.items():
        why = SCHEMA[key].problem(options[opt])
        if why:
            problems.append(_problem_line(key, options[opt], why))
    if len(problems) == 1:
        key, rest = problems[0].split(": ", 1)
        raise ParamError(key, rest)
    if problems:
        raise ParamsError("options", problems)


def section_keys(section: str, *names: str) -> dict[str, str]:
    """``{option_name: "section.option-name"}`` for options DVC unpacks from one section."""
    return {n: f"{section}.{n.replace('_', '-')}" for n in names}


def _flatten(params: dict) -> dict[str, Any]:
    flat = {}
    for top, value in params.items():
        if top in SPECIAL or not isinstance(value, dict) or top in SCHEMA:
            flat[str(top)] = value
        else:
            for sub, v in value.items():
                flat[f"{top}.{sub}"] = v
    return flat


def _rounds_problems(rounds: Any, models: Any) -> list[str]:
    from glode.rounds import validate_rounds

    try:
        validate_rounds(rounds)
    except ParamError as exc:
        return [f"{exc.name}: {exc.problem}"]
    out = []
    expected = {"r0": {"prev": "source"}, **(rounds or {})}
    if models != expected:
        out.append("models: must be r0 plus every round (the params.yaml line `models: {r0: {prev: source}, <<: *rounds}` "
                   "derives it); restore that line instead of editing it")
    return out


def check_params(params: Any, root: str | Path = ".") -> list[str]:
    """Every problem of a parsed params.yaml, one line each (empty: all good).

    Checks types and ranges of every key, unknown and missing keys, the rounds chain
    (cycles, missing predecessors, more than MAX_ROUNDS), label sets, and that the input files
    and a local encoder folder exist (paths relative to ``root``)."""
    if not isinstance(params, dict):
        return [f"the file must hold a mapping of keys, got {type(params).__name__}"]
    root = Path(root)
    flat = _flatten(params)
    problems = []
    for key, value in flat.items():
        if key in SPECIAL:
            continue
        if key in SECTIONS:
            problems.append(f"{key}: {value!r} is not allowed; expected a mapping of its keys ({', '.join(SECTIONS[key])})")
            continue
        if key not in SCHEMA:
            near = difflib.get_close_matches(key, list(SCHEMA) + list(SPECIAL), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            problems.append(f"{key}: unknown key{hint}; a typo would otherwise go unnoticed or stop a stage later")
            continue
        why = SCHEMA[key].problem(value)
        if why:
            problems.append(_problem_line(key, value, why))
    for key in SCHEMA:
        if key not in flat and key.split(".")[0] not in flat:
            problems.append(f"{key}: missing (default {DEFAULTS[key]!r})")
    problems += _rounds_problems(params.get("rounds"), params.get("models"))

    def ok(key: str) -> bool:
        return key in flat and SCHEMA[key].problem(flat[key]) is None

    if ok("retrain.schedule-rounds") and flat["retrain.schedule-rounds"] > 0:
        rounds_n = len(params.get("rounds") or {})
        why = schedule_rounds_problem(flat["retrain.schedule-rounds"], flat["retrain.init"]) if ok("retrain.init") else None
        if why:
            problems.append(f"retrain.schedule-rounds: {why}")
        elif rounds_n > flat["retrain.schedule-rounds"]:
            problems.append(f"retrain.schedule-rounds: {flat['retrain.schedule-rounds']} is fewer than the {rounds_n} "
                            "rounds; the schedule must cover every chained round")
    if ok("data.labels") and ok("data.ignore-labels"):
        try:
            check_label_sets(flat["data.labels"], flat["data.ignore-labels"] or [])
        except ParamError as exc:
            problems.append(f"{exc.name}: {exc.problem}")
    files = [k for k in ("data.source-train", "data.source-dev") if ok(k)]
    paths = [(k, Path(flat[k])) for k in files]
    if ok("target"):
        paths += [("target", Path("data", flat["target"], f)) for f in ("train.txt", "test.txt")]
    for key, path in paths:
        if not (root / path).is_file():
            problems.append(f"{key}: {flat[key]!r}: file {root / path} {'is a folder' if (root / path).is_dir() else 'not found'}")
    if ok("encoder.name"):
        name = flat["encoder.name"]
        if name != "embedded" and not (root / name).is_dir() and not Path(name).is_dir():
            why = local_path_reason(name, root)
            if why:
                problems.append(f"encoder.name: {name!r}: no such folder ({why}); give 'embedded', an existing folder "
                                "or a Hugging Face id")
    return problems


def local_path_reason(name: str, root: str | Path = ".") -> str | None:
    """Why ``encoder.name`` ``name`` (not an existing folder) must be meant as a local path and
    not a Hugging Face id (``org/model``), or None when it can be an id. A name whose first part
    is a folder here (``models/my-encoder`` in a project with ``models/``) is a path: taking it
    for a Hub id would look for it online."""
    if name.startswith((".", "/", "~")) or "\\" in name:
        return "a path"
    if name.count("/") > 1:
        return "a path: a Hugging Face id has at most one '/'"
    if not _HUB_ID.match(name):
        return "not a Hugging Face id"
    first = name.split("/")[0]
    if "/" in name and ((Path(root) / first).is_dir() or Path(first).is_dir()):
        return f"{first}/ is a folder here, so this is a path, not a Hugging Face id"
    return None


#: keys that only the local (kNN) view of denoising reads
LOCAL_VIEW_KEYS = ("k", "denoise.o-keep-rate", "denoise.local-scale", "denoise.local-cap", "denoise.index",
                   "denoise.auto-threshold", "denoise.nprobe")


def param_notes(params: Any) -> list[str]:
    """Notes (not errors) on a valid params.yaml: values that have no effect as the file stands,
    e.g. ``dvc exp run -S k=500`` while the local view is off. The ``check`` stage and ``glode
    check`` print them."""
    if not isinstance(params, dict):
        return []
    flat = _flatten(params)
    notes = []
    if flat.get("denoise.use-local") is False:
        changed = [k for k in LOCAL_VIEW_KEYS if k in flat and flat[k] != DEFAULTS[k]]
        if changed:
            values = ", ".join(f"{k}={flat[k]!r}" for k in changed)
            notes.append(f"{values}: no effect while denoise.use-local is false (only the local (kNN) view reads "
                         f"{', '.join(LOCAL_VIEW_KEYS)}); set denoise.use-local: true to use them")
    return notes


def load_file(path: str | Path = "params.yaml") -> tuple[str, dict]:
    """The text and the parsed mapping of a params file. A missing file, a YAML error or a file
    that is no mapping is one GlodeError naming the file: what ``glode check``, ``glode rounds``
    and ``glode preset`` report before they look at a value."""
    import yaml

    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "file not found"
        raise GlodeError(f"{path}: {what}; run from the project folder or pass --params")
    try:
        text = path.read_text(encoding="utf-8")
        params = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GlodeError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise GlodeError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(params, dict):
        raise GlodeError(f"{path}: the file must hold a mapping of keys, got {type(params).__name__}")
    return text, params


def check_file(path: str | Path = "params.yaml") -> dict:
    """Read and check a params file; raises ParamsError listing every problem."""
    path = Path(path)
    _, params = load_file(path)
    problems = check_params(params, path.parent)
    if problems:
        raise ParamsError(str(path), problems)
    return params
