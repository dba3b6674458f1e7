"""A params.yaml for tests, generated from the schema (glode/params.py), never read from the
working tree: a user's `dvc exp run -S k=500` leaves `k: 500` in the workspace's params.yaml,
and tests must not depend on that (issue 39).

The text has the layout of the project's params.yaml: the top-level keys, the ``rounds`` chain
under a ``&rounds`` anchor that ``models`` merges, then one block per section, a ``key: value``
line per key in the schema's order (``glode rounds`` and ``glode preset`` edit it as text).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from glode.params import DEFAULTS
from glode.rounds import DEFAULT_ROUNDS, chain


def default_params() -> dict:
    """The schema defaults as a parsed params.yaml (``models`` derived from ``rounds``)."""
    params: dict[str, Any] = {}
    for key, value in DEFAULTS.items():
        section, _, name = key.rpartition(".")
        (params.setdefault(section, {}) if section else params)[name] = copy.deepcopy(value)
    rounds = chain(DEFAULT_ROUNDS)
    out = {k: v for k, v in params.items() if not isinstance(v, dict)}
    out["rounds"] = rounds
    out["models"] = {"r0": {"prev": "source"}, **copy.deepcopy(rounds)}
    out.update({k: v for k, v in params.items() if isinstance(v, dict)})
    return out


def _scalar(value: Any) -> str:
    """A value in flow style; a whole float as an integer, as `glode preset` writes it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def params_text(params: dict, comments: bool = False) -> str:
    """``params`` (the shape of :func:`default_params`) as params.yaml text; with ``comments``,
    each value line ends in ``# KEY`` in column 34 (to check that edits keep comments)."""
    def line(indent: str, name: str, value: Any, key: str) -> str:
        head = f"{indent}{name}: {_scalar(value)}"
        return (f"{head:<32} # {key}" if comments else head) + "\n"  # comments in one column, as in the project's

    lines = ["# glode parameters: the schema defaults of glode/params.py (a test fixture)\n"]
    lines += [line("", k, v, k) for k, v in params.items() if not isinstance(v, dict)]
    rounds = params.get("rounds") or {}
    lines += ["\n", "rounds: &rounds" + (" {}" if not rounds else "") + "\n"]
    lines += [f"  {name}: {{prev: {spec['prev']}}}\n" for name, spec in rounds.items()]
    lines += ["\n", "models:\n", "  r0: {prev: source}\n", "  <<: *rounds\n"]
    for section, values in params.items():
        if isinstance(values, dict) and section not in ("rounds", "models"):
            lines += ["\n", f"{section}:\n"] + [line("  ", k, v, f"{section}.{k}") for k, v in values.items()]
    return "".join(lines)


def default_params_text(comments: bool = False) -> str:
    """The schema defaults as params.yaml text (see :func:`params_text`)."""
    return params_text(default_params(), comments)


def write_params(path: str | Path, params: dict | None = None, comments: bool = False) -> Path:
    """Write ``params`` (default: the schema defaults) as params.yaml text to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(params_text(default_params() if params is None else params, comments), encoding="utf-8")
    return path


def write_project(root: str | Path) -> Path:
    """A project folder at ``root``: a params.yaml of the schema defaults and three-sentence input
    files where it expects them."""
    from tests.synthetic import write_corpus

    root = Path(root)
    write_params(root / "params.yaml")
    for i, f in enumerate(("en/train.txt", "en/dev.txt", "de/train.txt", "de/test.txt")):
        write_corpus(root / "data" / f, 3, seed=i)
    return root
