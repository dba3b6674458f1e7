"""Named sets of params.yaml values: ``glode preset glode`` turns GLoDe's global and local views
on (the default), ``glode preset paper`` switches the pipeline to the paper's progressive mode,
``glode preset plain`` to plain self-training (no denoising; level with the views on v3's
CoNLL-size table, below them at the README's settings: README, docs/RESULTS.md),
``glode preset default`` switches back.

The paper's progressive mode (docs/METHOD.md §7) is the reference's target run cut into
one-epoch rounds that continue one target model: r1 starts from the pretrained encoder, every
later round from the previous round's model (``retrain.init: chain``) with its AdamW state and
its place in one learning-rate schedule (``retrain.schedule-rounds``); from r3 on each round
refines the previous round's labels (``denoise.start: labels``) with the reference's views (a
fixed random projection, momentum prototypes, no agreement gate) and weights, and every round
trains with the reference's target loss and optimiser values. Every key the method reads is
pinned, so that the mode stays the reference's when glode's defaults change.

A preset is applied as a text edit of params.yaml: only the values change, comments and the
``&rounds`` anchor stay, and the new file is checked in full before it replaces the old one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glode.errors import ParamError

__all__ = ["Preset", "PRESETS", "apply_preset", "preset_text", "set_value"]


@dataclass(frozen=True)
class Preset:
    description: str
    rounds: int | None  # None: the preset leaves the rounds chain as it is
    values: dict[str, Any] = field(default_factory=dict)  # dotted params.yaml keys


# The reference's runs (METHOD.md §3, §7; Ding-ZJ/GLoDe's scripts): the source model 8 epochs, the
# target model 5 epochs in one optimiser run, AdamW lr 1e-5 for every parameter, betas (0.9, 0.98),
# batch 8 x 4 accumulated; labels updated at every visit from the third target epoch on, with m
# 0.9125, 0.875, 0.8375 in epochs 3 to 5; the loss -Σ Y log softmax(softmax(z)). Five one-epoch
# rounds express that: one AdamW state and one schedule over the chain, labels carried unchanged
# through r2 (update-from 3).
PAPER = Preset(
    "the paper's progressive mode at the reference's timing: 5 one-epoch rounds of one target run (one AdamW "
    "state and LR schedule), labels refined from r3 on (m 0.9125, 0.875, 0.8375) with the reference's views, "
    "its target loss and its optimiser values",
    rounds=5,
    values={
        "train.epochs": 8, "train.lr": 1e-5, "train.head-lr": 1e-5, "train.adam-beta2": 0.98,
        "train.batch-size": 8, "train.grad-accum": 4,
        "retrain.init": "chain", "retrain.epochs": 1, "retrain.schedule-rounds": 5,
        "retrain.target-loss": "reference", "retrain.harden-o": 0.0,
        "denoise.start": "labels", "denoise.gate": "none", "denoise.update-from": 3,
        "denoise.m-start": 0.9125, "denoise.m-step": 0.0375, "denoise.m-min": 0.8, "denoise.visits": 1,
        "denoise.features": "model", "denoise.projection": "random", "denoise.dim": 128,
        "denoise.prototype": "ema", "denoise.momentum": 0.99, "denoise.prototype-from": "all",
        "denoise.use-global": True, "denoise.use-local": True, "denoise.o-keep-rate": 0.03,
        "denoise.local-scale": 0.9, "denoise.local-cap": 1.0, "denoise.select": 1.0, "denoise.select-rest": 0.0,
        "k": 300,
    },
)


# GLoDe's denoising at glode's own settings (the default): each round's fresh predictions refined
# by the global and local views, a top-class change only where both agree. Above plain
# self-training at the README's settings, level with it on v3's table (README, docs/RESULTS.md).
GLODE = Preset(
    "GLoDe's denoising (the default): the global (prototype) and local (kNN) views refine each round's "
    "predictions (denoise.gate: agree); above plain self-training at the README's settings, level on v3's table",
    rounds=None,
    values={"denoise.use-global": True, "denoise.use-local": True, "denoise.start": "model"},
)

# Plain self-training: each round trains on the previous model's own soft labels, the views off.
# It turns the views off without resetting the rounds chain, which `default` does.
PLAIN = Preset(
    "plain self-training: each round trains on the previous model's own predictions, no denoising "
    "(level with the views on v3's CoNLL-size table, below them at the README's settings; README)",
    rounds=None,
    values={"denoise.use-global": False, "denoise.use-local": False, "denoise.start": "model"},
)


def _default_preset() -> Preset:
    from glode.params import DEFAULTS
    from glode.rounds import DEFAULT_ROUNDS

    keys = {k for p in (GLODE, PAPER, PLAIN) for k in p.values}
    return Preset("glode's defaults (params.yaml as committed) for every key a preset sets",
                  rounds=DEFAULT_ROUNDS, values={k: DEFAULTS[k] for k in sorted(keys)})


PRESETS: dict[str, Preset] = {"glode": GLODE, "paper": PAPER, "plain": PLAIN, "default": _default_preset()}


def _yaml_scalar(value: Any) -> str:
    import yaml

    if isinstance(value, float) and value.is_integer():  # 1.0 reads back as the same number
        value = int(value)
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def set_value(lines: list[str], key: str, value: Any) -> bool:
    """Replace the value of ``key`` (``section.name`` or a top-level ``name``) in place, keeping
    the line's comment; returns whether it changed."""
    section, _, name = key.rpartition(".")
    lo, hi = 0, len(lines)
    indent = ""
    if section:
        heads = [i for i, line in enumerate(lines) if re.match(rf"^{re.escape(section)}\s*:\s*(#.*)?$", line)]
        if len(heads) != 1:
            raise ParamError(key, f"params.yaml must have exactly one top-level '{section}:' block, found {len(heads)}")
        lo = heads[0] + 1
        hi = lo
        while hi < len(lines) and (lines[hi].startswith((" ", "\t")) or not lines[hi].strip()):
            hi += 1
        indent = r"[ \t]+"
    pattern = re.compile(rf"^({indent}{re.escape(name)}\s*:[ \t]*)([^#\n]*?)([ \t]*(#.*)?)(\r?\n)?$")
    hits = [i for i in range(lo, hi) if pattern.match(lines[i])]
    if len(hits) != 1:
        raise ParamError(key, f"found {len(hits)} lines for this key in params.yaml; edit it by hand")
    m = pattern.match(lines[hits[0]])
    import yaml

    old = yaml.safe_load(m.group(2) or "null")
    if old == value and isinstance(old, bool) == isinstance(value, bool):
        return False
    new_value = _yaml_scalar(value)
    pad = m.group(3)
    if m.group(4):  # keep the comment's column where the new value leaves room
        width = len(m.group(2)) + len(pad) - len(pad.lstrip(" \t"))
        pad = " " * max(1, width - len(new_value)) + pad.lstrip(" \t")
    lines[hits[0]] = m.group(1) + new_value + pad + (m.group(5) or "")
    return True


def preset_text(text: str, name: str) -> tuple[str, list[str]]:
    """params.yaml text with preset ``name`` applied, and the keys whose value changed."""
    from glode.rounds import rounds_text

    if name not in PRESETS:
        raise ParamError("preset", f"unknown preset {name!r}; one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    lines = text.splitlines(keepends=True)
    changed = [key for key, value in preset.values.items() if set_value(lines, key, value)]
    new = "".join(lines) if preset.rounds is None else rounds_text("".join(lines), preset.rounds)
    if new != "".join(lines):
        changed.append("rounds")
    return new, changed


def apply_preset(params_path: str | Path, name: str) -> list[str]:
    """Apply preset ``name`` to the params file; the file is replaced only when the whole new
    file passes the params check. Returns the keys that changed."""
    import yaml

    from glode.atomic import atomic_path
    from glode.params import ParamsError, check_params, load_file

    path = Path(params_path)
    if name not in PRESETS:
        raise ParamError("preset", f"unknown preset {name!r}; one of {', '.join(PRESETS)}")
    text, _ = load_file(path)  # a missing file or a YAML error: one line, as `glode check` says it
    new, changed = preset_text(text, name)
    parsed = yaml.safe_load(new)
    flat = {f"{s}.{k}": v for s, sub in parsed.items() if isinstance(sub, dict) for k, v in sub.items()}
    wrong = [k for k, v in PRESETS[name].values.items() if (flat[k] if "." in k else parsed.get(k)) != v]
    problems = [f"{k}: could not be set" for k in wrong] + check_params(parsed, path.parent)
    if problems:
        raise ParamsError(str(path), problems)
    if changed:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(new, encoding="utf-8")
    return changed
