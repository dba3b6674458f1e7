"""Protocol v3 (issue 19): three training seeds, test sets of up to 3000 sentences, a paired
bootstrap; the project's current evidence (docs/RESULTS.md, snapshot f66012fd).

    python bench/results.py --protocol v3 status    # measured / pending / skipped cells, hours left
    python bench/results.py --protocol v3 estimate  # the cost estimate and its arithmetic
    python bench/results.py --protocol v3 run --only de:zeroshot:0 --only de:default:0

A cell is (language, variant, seed), cells in `bench/results/cells-v3/<lang>-<variant>-s<seed>.json`.
Variants on all six targets: `zeroshot` (r0), `plain`, `default` (the snapshot's params.yaml
defaults, whatever they are then) and `paper` (`PAPER_MODE`: `glode preset paper` as it was at the
pinned commit, at the default round's budget); ablations `global`, `local`, `nomlm` on de and ar
with seed 0 only. Settings: seeds 0, 1, 2; 2 epochs for r0 and every round (376 optimiser steps per
round); 1 round; 3000 source, 1000 source dev and 3000 target sentences; up to 3000 test sentences
(es has 1517, hi 1000); span caps as in v1/v2 (CoNLL 4 words, WikiAnn 6, zh 10 characters). Only
r0 and the last round are scored on the test set. Work folders: `../bench-work/v3/<lang>-s<seed>`,
one per (language, seed), so the variants of a seed share its r0; a variant that changes what r0
reads (nomlm) gets `<lang>-s<seed>-<variant>`. bench/bootstrap.py turns the per-sentence counts
into paired bootstrap intervals when rendering.

v3's size is an estimate from the committed v2 cells (`bench/results/cells-v2/`; `estimate` prints
it; nothing was measured for it): per language the median wall time of each stage kind over the
v2 GLoDe/plain/global/local stages that ran; training scaled by optimiser steps (v3 376 / v2 564 =
2/3: a v2 round's train_target of 488 (ar) to 1255 s (es), median per language, becomes 325 to
837 s), test scoring by test sentences / 1000, twice (the evaluate stage, then the per-sentence
counts); r0's stages and the first round's pseudo labels run once per work folder. Summed over the
78 cells of the plan (60 defined + 18 `paper` cells costed as one default round): de 3.0 h, es
3.0, nl 2.1, ar 1.8, hi 1.4, zh 2.2 = 13.5 h of the 2-core machine (3.1 h of it the paper cells),
within the issue's ~15 h. The alternatives cost 18.9 h (3 epochs, 1 round), 23.4 h (2 epochs, 2
rounds) and 33.3 h (v2's 3 epochs and 2 rounds); 1 epoch is far from converged (v1). v2's second
round added nothing on the average (plain 58.2 -> 58.3, GLoDe 58.1 -> 58.0), so v3 spends the
budget on seeds and test sentences instead.
"""

from __future__ import annotations

import json
import math

from results_harness import ABLATION_LANGS, NO_DENOISING, ORDER, ROOT, Protocol, fmt
from results_tables import (COST_KINDS, Tables, final_f1, plan_seconds, render_bootstrap, render_denoise_effect,
                            render_f1_table, render_interim, render_measured, render_per_variant, render_wall_times)

V3_SEEDS = (0, 1, 2)  # train.seed: r0 and every round
V3_EPOCHS = 2  # train.epochs for r0 and every round
V3_ROUNDS = 1  # self-training rounds of the plain and default variants
V3_SIZES = {"source_train": 3000, "source_dev": 1000, "target_unlabelled": 3000, "target_test": 3000}
V3_ORDER = ["de", "ar", "hi", "zh", "es", "nl"]  # explore where v1/v2 GLoDe lost first
V3_ABLATION_SEED = 0
V3_BOOTSTRAP = {"n_resamples": 10_000, "seed": 0}
TRAIN_BATCH = 16  # the snapshot's train.batch-size (steps per epoch = ceil(source sentences / 16))
# test sentences of each split (shared/data/README.md); v3 takes up to 3000: es has 1517, hi 1000
TEST_AVAILABLE = {"de": 3005, "es": 1517, "nl": 5195, "ar": 10000, "hi": 1000, "zh": 10000}

# The paper's progressive mode (`glode preset paper`, docs/METHOD.md §7) at the protocol's sizes: its
# three rounds continue one target model and share the default round's training budget (3 x 2/3 of
# an epoch = 378 optimiser steps against the default's 376); a target sentence is drawn 2/3 times
# per round (equal source and target sizes), so each round's update takes m^(2/3).
PAPER_ROUND_EPOCHS = V3_EPOCHS / 3
# `glode preset paper` as it was at v3's pinned commit f66012fd (the preset has since moved to the
# reference's timing, issue 36): v3's paper cells were measured with these values.
PAPER_V3_PRESET = {
    "retrain.init": "chain", "retrain.epochs": 1,
    "denoise.start": "labels", "denoise.gate": "none",
    "denoise.m-start": 0.95, "denoise.m-step": 0.075, "denoise.m-min": 0.8, "denoise.visits": 1,
    "denoise.features": "model", "denoise.projection": "random", "denoise.dim": 128,
    "denoise.prototype": "ema", "denoise.momentum": 0.99, "denoise.prototype-from": "all",
    "denoise.use-global": True, "denoise.use-local": True, "denoise.o-keep-rate": 0.03,
    "denoise.local-scale": 0.9, "denoise.local-cap": 1.0, "denoise.select": 1.0, "denoise.select-rest": 0.0,
    "k": 300,
}
PAPER_MODE: dict | None = {**PAPER_V3_PRESET, "rounds": 3,
                           "retrain.epochs": PAPER_ROUND_EPOCHS,
                           "denoise.visits": PAPER_ROUND_EPOCHS * V3_SIZES["source_train"] / V3_SIZES["target_unlabelled"]}

V3_VARIANTS = {  # name -> (description, params overrides; None: not defined yet, skipped)
    "zeroshot": ("r0, the source model, zero-shot", {}),
    "plain": ("plain self-training: each round trains on the previous model's own soft labels, no denoising",
              NO_DENOISING),
    "default": ("the snapshot's params.yaml defaults, whatever they are at the pinned commit", {}),
    "paper": ("the paper's progressive mode", PAPER_MODE),
    "global": ("the default with the global view only (one seed)", {"denoise.use-local": False}),
    "local": ("the default with the local view only (one seed)", {"denoise.use-global": False}),
    "nomlm": ("the default without the MLM loss, r0 included (one seed)", {"train.mlm-weight": 0.0}),
}
V3_MAIN = ("zeroshot", "plain", "default", "paper")
V3_ABLATIONS = ("global", "local", "nomlm")


def plan_v3(include_undefined: bool = False) -> list[tuple[str, str, int]]:
    """v3 cells (language, variant, seed) in priority order: seed 0 on every target (zero-shot,
    plain, default, paper), then seeds 1 and 2, then the one-seed ablations on de and ar.
    Variants whose definition is missing are left out unless ``include_undefined``."""
    cells = [(lang, v, seed) for seed in V3_SEEDS for lang in V3_ORDER for v in V3_MAIN]
    cells += [(lang, v, V3_ABLATION_SEED) for lang in ABLATION_LANGS for v in V3_ABLATIONS]
    return [c for c in cells if include_undefined or PROTOCOL.defined(c[1])]


# ----- the v3 cost estimate (from the committed v2 cells: nothing measured for it)

V2_CELLS = ROOT / "bench" / "results" / "cells-v2"  # protocol v2's committed cells
V2_SIZES = {"source_train": 3000, "source_dev": 1000, "target_unlabelled": 3000, "target_test": 1000}  # v2's slices
V2_TRAIN_STEPS = 3 * 188  # optimiser steps of every v2 training: 3 epochs x ceil(3000 / 16)


def v2_stage_costs(cells: dict) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Median wall seconds per stage kind and language over the stages that ran in the v2
    GLoDe, plain, global and local cells (nomlm skips the MLM and is faster; hf/steps run
    other code). A kind a language never ran in v2 (es's r0 stages ran before the v2 cells
    were recorded) is filled as its train_target time x the median over the other languages
    of (kind / train_target); those fills are listed."""
    from statistics import median

    seen: dict[str, dict[str, list[float]]] = {lang: {k: [] for k in COST_KINDS} for lang in ORDER}
    for (lang, variant), c in cells.items():
        if variant in ("glode", "plain", "global", "local"):
            for name, st in c["stages"].items():
                kind = name.split("@")[0]
                if st.get("ran") and kind in COST_KINDS:
                    seen[lang][kind].append(st["seconds"])
    costs = {lang: {k: median(v) for k, v in d.items() if v} for lang, d in seen.items()}
    filled = []
    for lang in ORDER:
        for kind in COST_KINDS:
            if kind not in costs[lang]:
                ratios = [costs[o][kind] / costs[o]["train_target"] for o in ORDER if kind in costs[o]]
                costs[lang][kind] = median(ratios) * costs[lang]["train_target"]
                filled.append(f"{lang} {kind}")
    return costs, filled


CHECK_S = 1.5  # the params check stage (issue 20; measured 1.2-1.7 s on a fresh clone), absent from v2's cells


def v3_stage_costs(v2: dict[str, dict[str, float]], lang: str) -> dict[str, float]:
    """v2's seconds scaled to v3: training by optimiser steps, scoring by corpus sizes."""
    steps = V3_EPOCHS * math.ceil(V3_SIZES["source_train"] / TRAIN_BATCH)
    src, tgt = V3_SIZES["source_train"] / V2_SIZES["source_train"], V3_SIZES["target_unlabelled"] / V2_SIZES["target_unlabelled"]
    test = min(V3_SIZES["target_test"], TEST_AVAILABLE[lang]) / V2_SIZES["target_test"]
    c = v2[lang]
    return {"check": CHECK_S, "prepare": c["prepare"], "encoder": c["encoder"],
            "train_source": c["train_source"] * steps / V2_TRAIN_STEPS, "train_target": c["train_target"] * steps / V2_TRAIN_STEPS,
            "initial_labels": c["initial_labels"] * tgt, "pseudo_label": c["pseudo_label"] * (src + tgt) / 2,
            "denoise": c["denoise"] * (src + tgt) / 2, "evaluate": c["evaluate"] * test,
            "sentence_counts": c["evaluate"] * test}  # the same prediction pass again


def estimate_v3(v2_cells: dict, cells: list[tuple[str, str, int]] | None = None) -> dict:
    """Estimated wall seconds of each v3 cell on the 2-core machine, in plan order, with DVC's
    sharing inside a work folder (r0's stages and the first round's pseudo labels run once per
    folder). Undefined variants (paper) are costed as a round of the default, an assumption."""
    v2, filled = v2_stage_costs(v2_cells)
    costs = {lang: v3_stage_costs(v2, lang) for lang in ORDER}

    def stage_seconds(lang: str, variant: str, name: str) -> float:
        kind = name.split("@")[0]
        return costs[lang][kind] * (PROTOCOL.round_epochs(variant) / V3_EPOCHS if kind == "train_target" else 1.0)

    per_cell = plan_seconds(PROTOCOL, cells or plan_v3(include_undefined=True), stage_seconds)
    return {"cells": per_cell, "total_s": sum(per_cell.values()), "v2_costs": v2, "filled": filled,
            "steps_per_round": V3_EPOCHS * math.ceil(V3_SIZES["source_train"] / TRAIN_BATCH)}


def render_estimate(est: dict) -> str:
    cells = est["cells"]
    lines = ["### Estimated cost of the whole v3 plan (an estimate from the v2 cells' stage times, not a measurement)", "",
             f"Scaled from the median v2 stage times (3 epochs = {V2_TRAIN_STEPS} steps per training, 1000 test sentences): "
             f"training x {est['steps_per_round']}/{V2_TRAIN_STEPS} steps, test scoring x test sentences/1000 (twice: the "
             "evaluate stage, then the per-sentence counts); r0's stages and the first round's pseudo labels once per work "
             "folder. Filled from the other languages' ratios to train_target: "
             f"{', '.join(est['filled']) or 'none'}.", "",
             "| target | test sentences | train_source (s) | train_target (s) | evaluate (s) | cells | hours |",
             "|---|---|---|---|---|---|---|"]
    for lang in ORDER:
        c = v3_stage_costs(est["v2_costs"], lang)
        mine = [k for k in cells if k[0] == lang]
        lines.append(f"| {lang} | {min(V3_SIZES['target_test'], TEST_AVAILABLE[lang])} | {c['train_source']:.0f} | "
                     f"{c['train_target']:.0f} | {c['evaluate']:.0f} | {len(mine)} | {sum(cells[k] for k in mine) / 3600:.1f} |")
    undefined = sum(s for k, s in cells.items() if not PROTOCOL.defined(k[1]))
    lines.append(f"| **all** | | | | | {len(cells)} | **{est['total_s'] / 3600:.1f}** |")
    lines += ["", f"Of the {est['total_s'] / 3600:.1f} hours, {undefined / 3600:.1f} are the cells of variants not defined yet "
              "(costed as one round of the default)."]
    return "\n".join(lines) + "\n"


# ----- v3 rendering


V3_BOOTSTRAP_PAIRS = (("default", "plain"), ("default", "zeroshot"))
V3_INTERIM_PAIRS = (("default", "plain"), ("default", "zeroshot"), ("plain", "zeroshot"), ("paper", "plain"))
# beside the two pairs, over all seeds: does self-training alone pay, and where the paper's mode stands
V3_OTHER_PAIRS = (("plain", "zeroshot"), ("paper", "plain"), ("paper", "default"))
VARIANT_NAMES = {"zeroshot": "zero-shot", "plain": "plain", "default": "default", "paper": "paper"}
V3_DENOISE_GOAL = "issue 19 asks for at least five, in every round"


def render_v3(cells: dict, proto: Protocol) -> str:
    """The v3 block of docs/RESULTS.md; every number from a measured cell, the rest *pending*."""
    planned = plan_v3(include_undefined=True)
    steps = V3_EPOCHS * math.ceil(V3_SIZES["source_train"] / TRAIN_BATCH)
    names = {"zeroshot": "zero-shot (r0)", "plain": f"plain (r{V3_ROUNDS})", "default": f"default (r{V3_ROUNDS})",
             "paper": "paper's progressive mode"}
    test_sizes = ", ".join(f"{lang} {min(V3_SIZES['target_test'], TEST_AVAILABLE[lang])}" for lang in ORDER)
    lines = [f"Settings: {len(V3_SEEDS)} training seeds ({', '.join(map(str, V3_SEEDS))}; `train.seed`, r0 included), "
             f"{V3_EPOCHS} epochs for r0 and every round ({steps} optimiser steps per round at batch {TRAIN_BATCH}), "
             f"{V3_ROUNDS} self-training round(s); {V3_SIZES['source_train']} source / {V3_SIZES['target_unlabelled']} "
             f"target sentences; up to {V3_SIZES['target_test']} test sentences "
             f"({test_sizes}).", "", *render_f1_table(TABLES, cells, names)]
    lines += ["", *render_bootstrap(TABLES, cells, V3_BOOTSTRAP_PAIRS)]
    lines += ["", *render_bootstrap(TABLES, cells, V3_OTHER_PAIRS, title="All seeds, the other pairs: paired bootstrap")]
    lines += ["", *render_interim(TABLES, cells, V3_INTERIM_PAIRS)]
    lines += ["", *render_per_variant(TABLES, cells, planned, (*V3_MAIN, *V3_ABLATIONS), one_seed=V3_ABLATIONS)]
    lines += ["", *render_denoise_effect(TABLES, cells, "default", goal=V3_DENOISE_GOAL)]

    lines += ["", f"### Ablations on de and ar (test F1 of the last round, %; seed {V3_ABLATION_SEED} only, one seed)", "",
              "| target | default | global view only | local view only | no MLM | plain |", "|---|---|---|---|---|---|"]
    for lang in ABLATION_LANGS:
        vals = [fmt(final_f1(PROTOCOL, cells[(lang, v, V3_ABLATION_SEED)])) if (lang, v, V3_ABLATION_SEED) in cells else "*pending*"
                for v in ("default", "global", "local", "nomlm", "plain")]
        lines.append(f"| {lang} | " + " | ".join(vals) + " |")

    lines += ["", *render_wall_times(cells)]
    lines += ["", render_measured(TABLES, cells, planned), "", render_estimate(estimate_v3(load_v2_cells())).rstrip("\n")]
    return "\n".join(lines) + "\n"


def load_v2_cells() -> dict[tuple[str, str], dict]:
    """The committed protocol-v2 cells, (language, variant) -> cell: the estimate's stage times.
    v2's code was retired in issue 37 (last at commit 722848f); its cells stay."""
    return {(c["language"], c["variant"]): c for c in (json.loads(p.read_text()) for p in sorted(V2_CELLS.glob("*.json")))}


def status_notes(proto: Protocol) -> list[str]:
    """`status`: the estimated hours the pending cells still need."""
    est = estimate_v3(load_v2_cells())
    pending = [k for k in plan_v3() if not proto.cell_path(*k).exists()]
    return [f"pending: {len(pending)} cells, about {sum(est['cells'][k] for k in pending) / 3600:.1f} h on a 2-core "
            f"machine (an estimate from the v2 stage times; the whole plan with the skipped cells: "
            f"{est['total_s'] / 3600:.1f} h; `estimate` for the arithmetic)"]


PROTOCOL = Protocol("v3", ROOT / "bench" / "results" / "cells-v3", "v3", V3_VARIANTS, V3_SIZES, V3_EPOCHS, V3_ROUNDS,
                    render=render_v3, plan=lambda: plan_v3(include_undefined=True),
                    estimate=lambda: render_estimate(estimate_v3(load_v2_cells())), status_notes=status_notes)
TABLES = Tables(PROTOCOL, V3_MAIN, V3_SEEDS, VARIANT_NAMES, V3_BOOTSTRAP)
