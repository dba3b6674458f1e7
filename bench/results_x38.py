"""Protocol x38 (issue 38, item 4): the source model r0 trained in bf16 (`train.precision: bf16`,
CPU autocast) against v4's zero-shot cells, r0 trained in fp32 by the same snapshot with the same
seeds, sizes and 3 epochs; nothing else differs. Cells in `bench/results/explore-bf16/`, work
folders in `../bench-work/x38/`.

    python bench/results.py --protocol x38 run --commit 4484a0f --only de:zeroshot:0 --only ar:zeroshot:0 ...
    python bench/results.py --protocol x38 render

Run it at v4's pinned commit, so that each pair differs only in training precision. At that commit
`train.precision` is also the scoring precision, so a cell's evaluate@r0 scores in bf16 (scoring
alone moves F1 by about ±0.06, docs/BENCHMARKS.md); `bench/scoring_precision.py --projects
../bench-work/x38/de-s0 ... --out bench/results/scoring_precision_x38.json` scores the same models in
fp32 too (its own file: the fp32-trained models' table stays apart), and the render shows that
column when the file has it.
"""

from __future__ import annotations

import json
from statistics import mean

from results_harness import ROOT, Protocol, fmt, load_cells
from results_v3 import V3_ROUNDS, V3_SEEDS, V3_SIZES
from results_v4 import PROTOCOL as V4_PROTOCOL
from results_v4 import V4_EPOCHS

X38_TARGETS = ("de", "ar")  # one CoNLL and one WikiAnn target, as the issue asks
X38_VARIANTS = {"zeroshot": ("r0 trained in bf16 (train.precision: bf16, CPU autocast), zero-shot",
                             {"train.precision": "bf16"})}
SCORING_PRECISION = ROOT / "bench" / "results" / "scoring_precision_x38.json"  # the bf16-trained models scored


def plan_x38() -> list[tuple[str, str, int]]:
    return [(lang, "zeroshot", seed) for seed in V3_SEEDS for lang in X38_TARGETS]


def _fp32_scored(project: str) -> float | None:
    """The fp32 test F1 of a bf16-trained r0, from bench/scoring_precision.py's results."""
    if not SCORING_PRECISION.is_file():
        return None
    for cell in json.loads(SCORING_PRECISION.read_text())["cells"]:
        if cell["project"].rstrip("/").endswith(f"x38/{project}") and cell["round"] == "r0":
            return cell["scores"].get("fp32", {}).get("f1")
    return None


def render_x38(cells: dict, proto: Protocol) -> str:
    """Per target and seed: fp32-trained r0 (v4) against bf16-trained r0 (the training times of the
    two were taken hours apart under different loads; docs/BENCHMARKS.md has the step time side by side)."""
    fp32 = load_cells(V4_PROTOCOL)
    lines = ["| target | seed | r0 trained fp32 (v4), F1 | r0 trained bf16, F1 scored bf16 | same model scored fp32 "
             "| bf16 − fp32 (scored bf16) | bf16 − fp32 (both scored fp32) |", "|---|---|---|---|---|---|---|"]
    diffs: dict[str, list[float]] = {}
    diffs_fp32: dict[str, list[float]] = {}  # training precision alone: both models scored in fp32
    for lang in X38_TARGETS:
        for seed in V3_SEEDS:
            ours, theirs = cells.get((lang, "zeroshot", seed)), fp32.get((lang, "zeroshot", seed))
            a = theirs["rounds"]["r0"]["f1"] if theirs else None
            b = ours["rounds"]["r0"]["f1"] if ours else None
            if ours and theirs and ours["commit"] != theirs["commit"]:
                raise ValueError(f"x38 {lang} seed {seed}: commit {ours['commit'][:8]}, v4's fp32 cell {theirs['commit'][:8]}: "
                                 "not a side-by-side pair")
            b32 = _fp32_scored(f"{lang}-s{seed}")
            d = None if a is None or b is None else b - a
            d32 = None if a is None or b32 is None else b32 - a
            for got, x in ((diffs, d), (diffs_fp32, d32)):
                if x is not None:
                    got.setdefault(lang, []).append(x)
            lines.append(f"| {lang} | {seed} | {fmt(a, 2)} | {fmt(b, 2)} | {fmt(b32, 2)} "
                         f"| {'pending' if d is None else f'{100 * d:+.2f}'} | {'pending' if d32 is None else f'{100 * d32:+.2f}'} |")
    lines.append("")
    for lang in X38_TARGETS:
        for got, how in ((diffs.get(lang, []), "bf16 scored bf16"), (diffs_fp32.get(lang, []), "both scored fp32")):
            lines.append(f"- {lang}: bf16 − fp32 ({how}) over {len(got)} of {len(V3_SEEDS)} seeds: "
                         + (f"mean {100 * mean(got):+.2f}, per seed {', '.join(f'{100 * x:+.2f}' for x in got)}"
                            if got else "pending"))
    return "\n".join(lines) + "\n"


PROTOCOL = Protocol("x38", ROOT / "bench" / "results" / "explore-bf16", "x38", X38_VARIANTS, V3_SIZES, V4_EPOCHS,
                    V3_ROUNDS, render=render_x38, plan=plan_x38, explore=True, r0_variant="zeroshot",
                    sentence_counts=False)  # its evaluate scores in bf16 at 4484a0f; sentence_counts.py in fp32
