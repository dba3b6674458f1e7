"""The self-training round chain in ``params.yaml``: validation and rewriting.

DVC cannot compute ``r{N-1}`` from ``rN``, so each round names its predecessor
explicitly (``rounds: {r1: {prev: r0}, r2: {prev: r1}}``, see docs). The chain must run
forwards: every ``prev`` is ``r0`` or a round defined earlier.
"""

from __future__ import annotations

import re
from pathlib import Path

from glode.errors import ParamError

ROUND_NAME = re.compile(r"^r([1-9][0-9]*)$")
# Each round trains a model (minutes to hours); more than this is a typo, not an experiment.
MAX_ROUNDS = 20
DEFAULT_ROUNDS = 1  # the committed params.yaml's chain (docs/RESULTS.md: a second round added nothing)


def validate_rounds(rounds: dict | None) -> list[str]:
    """Check the chain; returns round names in order. Raises ParamError naming the bad entry."""
    rounds = rounds or {}
    if not isinstance(rounds, dict):
        raise ParamError("rounds", f"expected a mapping like {{r1: {{prev: r0}}}}, got {type(rounds).__name__}")
    seen = ["r0"]
    for name, spec in rounds.items():
        if not isinstance(name, str) or not ROUND_NAME.match(name):
            raise ParamError("rounds", f"round name {name!r} must look like r1, r2, ...")
        _check_number(name)
        if not isinstance(spec, dict) or "prev" not in spec:
            raise ParamError(f"rounds.{name}", "needs a 'prev' entry naming the round it builds on, e.g. {prev: r0}")
        prev = spec["prev"]
        if prev == name:
            raise ParamError(f"rounds.{name}.prev", "a round cannot build on itself")
        if prev not in seen:
            later = prev in rounds
            raise ParamError(
                f"rounds.{name}.prev",
                f"{prev!r} is {'defined later' if later else 'not a round'}; "
                f"'prev' must be r0 or a round listed before {name} ({', '.join(seen)})",
            )
        seen.append(name)
    return seen[1:]


def _check_number(name: str) -> None:
    if int(ROUND_NAME.match(name).group(1)) > MAX_ROUNDS:
        raise ParamError(f"rounds.{name}", f"at most {MAX_ROUNDS} rounds (r1 ... r{MAX_ROUNDS}); each round trains a model")


def round_number(name: str) -> int:
    """N of a round name rN (0 for r0, the source model)."""
    m = re.fullmatch(r"r(0|[1-9][0-9]*)", str(name))
    if not m:
        raise ParamError("rounds", f"round name {name!r} must look like r1, r2, ...")
    return int(m.group(1))


def check_prev(round_name: str, prev: str) -> None:
    """A round may only build on r0 or a round with a smaller number (no cycles, no forward
    references); checked by every per-round stage, since a stage sees only its own entry."""
    m = ROUND_NAME.match(str(round_name))
    if not m:
        raise ParamError("rounds", f"round name {round_name!r} must look like r1, r2, ...")
    _check_number(round_name)
    p = re.match(r"^r(0|[1-9][0-9]*)$", str(prev))
    if not p or int(p.group(1)) >= int(m.group(1)):
        raise ParamError(
            f"rounds.{round_name}.prev",
            f"{prev!r} is not an earlier round; each round must build on r0 or a round with a smaller number "
            f"(e.g. {round_name}: {{prev: r{int(m.group(1)) - 1}}}); `glode rounds N` writes a valid chain",
        )


def chain(n: int) -> dict[str, dict[str, str]]:
    """The linear chain r1 <- r0, r2 <- r1, ... for ``n`` rounds."""
    if not 0 <= n <= MAX_ROUNDS:
        raise ParamError("rounds", f"the number of rounds must be between 0 and {MAX_ROUNDS}, got {n}")
    return {f"r{i}": {"prev": f"r{i - 1}"} for i in range(1, n + 1)}


def rounds_text(text: str, n: int) -> str:
    """params.yaml text whose top-level ``rounds`` block is an ``n``-round chain.

    The rest of the text (comments, the ``&rounds`` anchor that ``models`` merges) is kept
    byte for byte; a text edit, because YAML round-trippers mishandle anchored merges.
    """
    import yaml

    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if re.match(r"^rounds\s*:", line)]
    if len(starts) != 1:
        raise ParamError("rounds", f"params.yaml must have exactly one top-level 'rounds:' key, found {len(starts)}")
    first = starts[0]
    last = first + 1
    while last < len(lines) and (lines[last].startswith((" ", "\t")) or not lines[last].strip()):
        last += 1
    while last > first + 1 and not lines[last - 1].strip():  # keep blank lines before the next key
        last -= 1
    anchor = re.match(r"^rounds\s*:\s*(&\S+)?", lines[first]).group(1)
    head = "rounds:" + (f" {anchor}" if anchor else "")
    new = chain(n)
    block = [head + " {}\n"] if not new else [head + "\n"] + [f"  {k}: {{prev: {v['prev']}}}\n" for k, v in new.items()]
    text = "".join(lines[:first] + block + lines[last:])
    if (yaml.safe_load(text).get("rounds") or {}) != new:
        raise ParamError("rounds", "could not rewrite params.yaml safely; edit the 'rounds' block by hand")
    return text


def rewrite_rounds(params_path: str | Path, n: int) -> dict:
    """Replace the top-level ``rounds`` block of the params file by an ``n``-round chain
    (:func:`rounds_text`), atomically."""
    from glode.atomic import atomic_path
    from glode.params import load_file

    path = Path(params_path)
    chain(n)  # a bad N is named before the file is read
    text, _ = load_file(path)  # a missing file or a YAML error: one line, as `glode check` says it
    try:
        text = rounds_text(text, n)
    except ParamError as exc:
        raise ParamError("rounds", f"{path}: {exc.problem}") from None
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return chain(n)
