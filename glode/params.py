"""The check of a whole ``params.yaml``: every key at once, before anything reads or trains.

The keys are declared in ``glode/settings.py`` (type, allowed values, default, help: one
settings field per key), which makes :data:`SCHEMA` and :data:`DEFAULTS`; here a parsed file
is checked against them, with what no single field can say: unknown and missing keys, the
rounds chain, label sets, input paths, the encoder folder. A bad value is found in a second by
the pipeline's first stage (``check``) or by ``glode check``, instead of minutes later inside
the stage that reads it. The stages check their options against the same declarations when
they build their settings, so the file check and the stages cannot drift apart
(``tests/test_params.py`` checks that property).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from glode.errors import GlodeError, ParamError, ParamsError
from glode.settings import (DEFAULTS, SCHEMA, DenoiseSettings, Param, check_label_sets,
                            schedule_rounds_problem)

__all__ = ["reference_markdown", "Param", "SCHEMA", "DEFAULTS", "check_params", "check_file", "check_label_sets",
           "schedule_rounds_problem", "ParamsError", "load_file", "param_notes", "local_path_reason"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")

SECTIONS: dict[str, list[str]] = {}
for _key in SCHEMA:
    if "." in _key:
        SECTIONS.setdefault(_key.split(".")[0], []).append(_key.split(".", 1)[1])
SPECIAL = ("rounds", "models")  # checked as a whole: the round chain and its derived copy


def _problem_line(key: str, value: Any, why: str) -> str:
    return f"{key}: {value!r} is not allowed; expected {why}"


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
    if ok("retrain.span-weights") and flat["retrain.span-weights"] != "none" and ok("denoise.use-local") \
            and not flat["denoise.use-local"]:
        problems.append(f"retrain.span-weights: {flat['retrain.span-weights']!r} weighs spans by the local view's "
                        "neighbour counts; it needs denoise.use-local: true")
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
LOCAL_VIEW_KEYS = tuple(DenoiseSettings.params()[name].key for name in DenoiseSettings.LOCAL_VIEW)


def param_notes(params: Any) -> list[str]:
    """Notes (not errors) on a valid params.yaml: values that have no effect as the file stands,
    e.g. ``dvc exp run -S k=500`` while the local view is off. The ``check`` stage and ``glode
    check`` print them."""
    if not isinstance(params, dict):
        return []
    flat = _flatten(params)
    use_local = DenoiseSettings.params()["use_local"].key
    notes = []
    if flat.get(use_local) is False:
        changed = [k for k in LOCAL_VIEW_KEYS if k in flat and flat[k] != DEFAULTS[k]]
        if changed:
            values = ", ".join(f"{k}={flat[k]!r}" for k in changed)
            notes.append(f"{values}: no effect while {use_local} is false (only the local (kNN) view reads "
                         f"{', '.join(LOCAL_VIEW_KEYS)}); set {use_local}: true to use them")
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


REFERENCE_BEGIN = "<!-- params-reference:begin (glode params) -->"
REFERENCE_END = "<!-- params-reference:end -->"


def _yaml_value(value: Any) -> str:
    """A default as params.yaml writes it (``[PER, ORG, LOC]``, ``true``, ``5e-05``)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def reference_markdown() -> str:
    """The table of every params.yaml key (default, allowed values, help) made from the
    declarations in glode/settings.py: ``glode params`` prints it, and docs/PARAMETERS.md holds
    it between :data:`REFERENCE_BEGIN` and :data:`REFERENCE_END` (tests/test_params.py keeps them
    equal), so that no default or help text is written twice."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, p in SCHEMA.items():
        cells = [f"`{key}`", f"`{_yaml_value(p.default)}`", p.allowed(), p.help]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
