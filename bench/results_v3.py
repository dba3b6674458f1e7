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

from results_harness import (ABLATION_LANGS, LANGUAGES, NO_DENOISING, ORDER, R0_STAGES, ROOT, Protocol,
                             bench_module, fmt, stage_names)

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
COST_KINDS = ("prepare", "encoder", "train_source", "initial_labels", "pseudo_label", "denoise", "train_target", "evaluate")


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
    done: set = set()
    per_cell = {}
    for lang, variant, seed in cells or plan_v3(include_undefined=True):
        folder = PROTOCOL.workdir(lang, variant, seed)
        cost = v3_stage_costs(v2, lang)
        secs = 0.0
        for name in stage_names(PROTOCOL.rounds_of(variant)):
            key = (folder, name) if name in R0_STAGES else (folder, variant, name)
            if key not in done:
                done.add(key)
                kind = name.split("@")[0]
                scale = PROTOCOL.round_epochs(variant) / V3_EPOCHS if kind == "train_target" else 1.0
                secs += cost[kind] * scale
        per_cell[(lang, variant, seed)] = secs + cost["sentence_counts"]
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


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    from statistics import mean, stdev

    return mean(values), (stdev(values) if len(values) > 1 else None)


def _fmt_seeds(values: list[float], planned: int) -> str:
    """mean ± sd (n) in F1 points; fewer seeds than planned are said; none: *pending*."""
    if not values:
        return "*pending*"
    m, sd = _mean_sd(values)
    text = f"{100 * m:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")
    return text + (f" (n={len(values)})" if len(values) == planned else f" (n={len(values)} of {planned})")


def _final_f1(cell: dict) -> float | None:
    return (cell["rounds"].get(PROTOCOL.rounds_of(cell["variant"])[-1]) or {}).get("f1")


def _counts_stack(cells: dict, lang: str, variant: str, seeds) -> "list | None":
    """(seeds, sentences, 3) counts of a variant's last model, or None unless every seed is measured."""
    import numpy as np

    sc = bench_module("sentence_counts")
    stacks = []
    for seed in seeds:
        c = cells.get((lang, variant, seed))
        if c is None:
            return None
        last = PROTOCOL.rounds_of(variant)[-1]
        stacks.append(sc.decode_counts(c["sentence_counts"][last]))
    return np.stack(stacks)


V3_BOOTSTRAP_PAIRS = (("default", "plain"), ("default", "zeroshot"))
V3_INTERIM_PAIRS = (("default", "plain"), ("default", "zeroshot"), ("plain", "zeroshot"), ("paper", "plain"))
# beside the two pairs, over all seeds: does self-training alone pay, and where the paper's mode stands
V3_OTHER_PAIRS = (("plain", "zeroshot"), ("paper", "plain"), ("paper", "default"))
VARIANT_NAMES = {"zeroshot": "zero-shot", "plain": "plain", "default": "default", "paper": "paper"}


def render_bootstrap(cells: dict, seeds=V3_SEEDS, pairs=V3_BOOTSTRAP_PAIRS, title: str | None = None,
                     note: str = "Needs all seeds of both variants.") -> list[str]:
    """A paired-bootstrap table over ``seeds``: per target and on the six-target average, F1(a) − F1(b)
    with its 95% percentile interval for each (a, b) of ``pairs``; *pending* until every seed of both
    variants is measured."""
    bs = bench_module("bootstrap")
    n, seed0 = V3_BOOTSTRAP["n_resamples"], V3_BOOTSTRAP["seed"]
    heads = [f"{VARIANT_NAMES[a]} − {VARIANT_NAMES[b]}" for a, b in pairs]
    lines = [f"### {title or 'Paired bootstrap: ' + ' and '.join(heads)} (test F1 points, 95% percentile interval)", "",
             f"Test sentences resampled with replacement ({n} resamples, seed {seed0} + the target's index in the table); "
             "the same resample for both variants and every seed; per resample each seed's counts are summed, its F1 "
             "computed and averaged over the seeds. The average resamples each target independently and averages the "
             f"six differences. {note}", "",
             "| target | " + " | ".join(heads) + " |", "|---" * (len(pairs) + 1) + "|"]
    diffs: dict[tuple, list] = {pair: [] for pair in pairs}
    points: dict[tuple, list] = {pair: [] for pair in pairs}

    def fmt(point, low, high):
        return f"{100 * point:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"

    for t, lang in enumerate(ORDER):
        row = []
        for pair in pairs:
            a, b = (_counts_stack(cells, lang, v, seeds) for v in pair)
            if a is None or b is None:
                row.append("*pending*")
                continue
            d = bs.bootstrap_differences(a, b, n, seed0 + t)
            point = bs.mean_f1(a) - bs.mean_f1(b)
            diffs[pair].append(d)
            points[pair].append(point)
            iv = bs.interval_from(point, d, (len(a), len(b)))
            row.append(fmt(iv.diff, iv.low, iv.high))
        lines.append(f"| {lang} | " + " | ".join(row) + " |")
    avg = []
    for pair in pairs:
        if len(diffs[pair]) == len(ORDER):
            iv = bs.interval_from(sum(points[pair]) / len(ORDER), sum(diffs[pair]) / len(ORDER), (len(seeds),) * 2)
            avg.append(f"**{fmt(iv.diff, iv.low, iv.high)}**")
        else:
            avg.append(f"*pending* ({len(diffs[pair])}/{len(ORDER)} targets)")
    lines.append("| **average** | " + " | ".join(avg) + " |")
    return lines


def complete_seed_prefix(cells: dict) -> tuple:
    """The leading seeds whose every defined main cell (all targets) is measured: those an interim
    table can use without mixing seeds across targets."""
    done = []
    for seed in V3_SEEDS:
        if not all((lang, v, seed) in cells for lang in ORDER for v in V3_MAIN if PROTOCOL.defined(v)):
            break
        done.append(seed)
    return tuple(done)


def _six_target_average(f1s: list[float]) -> float | None:
    """A seed's average over the targets, or None until every target of that seed is measured."""
    return sum(f1s) / len(f1s) if len(f1s) == len(ORDER) else None


def render_seed_averages(per_seed_avg: dict) -> list[str]:
    """Each seed's six-target average per variant: the seed-to-seed spread the bootstrap does not see."""
    lines = ["### Six-target average test F1 per seed (%)", "",
             "| seed | " + " | ".join(VARIANT_NAMES[v] for v in V3_MAIN) + " |", "|---" * (len(V3_MAIN) + 1) + "|"]
    for seed in V3_SEEDS:
        row = []
        for v in V3_MAIN:
            got, average = per_seed_avg[v][seed], _six_target_average(per_seed_avg[v][seed])
            row.append(f"{100 * average:.1f}" if average is not None else f"*pending* ({len(got)} of {len(ORDER)})")
        lines.append(f"| {seed} | " + " | ".join(row) + " |")
    return lines


def _label_change(cell: dict, rnd: str) -> tuple[float, float, float] | None:
    """(hard F1, soft F1, Brier) of a round's pseudo labels after its denoising minus before
    (F1 in points, Brier x 1000); None where the cell did not record both sides."""
    pl = ((cell.get("rounds") or {}).get(rnd) or {}).get("pseudo_label") or {}
    parts = [pl.get(k) for k in ("before", "after", "soft_before", "soft_after")]
    if any(p is None for p in parts):
        return None
    before, after, soft_before, soft_after = parts
    return (100 * (after["f1"] - before["f1"]), 100 * (soft_after["f1"] - soft_before["f1"]),
            1000 * (soft_after["brier"] - soft_before["brier"]))


LABEL_CHANGE_DIGITS = (1, 1, 2)  # decimals of _label_change's hard F1, soft F1 (points) and Brier (x 1000)


def render_denoise_effect(cells: dict, variant: str = "default") -> list[str]:
    """Issue 19's second goal, per target and seed: what the variant's denoising did to the
    round's pseudo labels on the target corpus (hard F1, soft F1, Brier against gold)."""
    rounds = PROTOCOL.rounds_of(variant)[1:]
    lines = [f"### What the {variant} variant's denoising does to the pseudo labels (after − before, per seed)", "",
             "Hard and soft pseudo-label F1 in points, Brier score ×1000 (lower is better), on the target corpus "
             "against its gold labels; seeds " + ", ".join(map(str, V3_SEEDS)) + ".", "",
             "| target | round | hard F1 | soft F1 | Brier ×1000 |", "|---|---|---|---|---|"]
    raised = {rnd: 0 for rnd in rounds}
    for lang in ORDER:
        for rnd in rounds:
            per_seed = [_label_change(cells[(lang, variant, s)], rnd) if (lang, variant, s) in cells else None
                        for s in V3_SEEDS]
            cols = [" / ".join("*pending*" if ch is None else f"{ch[i]:+.{digits}f}" for ch in per_seed)
                    for i, digits in enumerate(LABEL_CHANGE_DIGITS)]
            if all(ch is not None and ch[0] > 0 and ch[1] > 0 for ch in per_seed):
                raised[rnd] += 1
            lines.append(f"| {lang} | {rnd} | " + " | ".join(cols) + " |")
    lines += ["", "Targets where the denoising raised both the hard and the soft F1 on every seed: "
              + "; ".join(f"{rnd}: {n} of {len(ORDER)}" for rnd, n in raised.items())
              + " (issue 19 asks for at least five, in every round)."]
    return lines


def render_v3(cells: dict, proto: Protocol) -> str:
    """The v3 block of docs/RESULTS.md; every number from a measured cell, the rest *pending*."""
    planned = plan_v3(include_undefined=True)
    skipped = sorted({v for _, v, _ in planned if not PROTOCOL.defined(v)})
    steps = V3_EPOCHS * math.ceil(V3_SIZES["source_train"] / TRAIN_BATCH)
    names = {"zeroshot": "zero-shot (r0)", "plain": f"plain (r{V3_ROUNDS})", "default": f"default (r{V3_ROUNDS})",
             "paper": "paper's progressive mode"}
    test_sizes = ", ".join(f"{lang} {min(V3_SIZES['target_test'], TEST_AVAILABLE[lang])}" for lang in ORDER)
    lines = [f"Settings: {len(V3_SEEDS)} training seeds ({', '.join(map(str, V3_SEEDS))}; `train.seed`, r0 included), "
             f"{V3_EPOCHS} epochs for r0 and every round ({steps} optimiser steps per round at batch {TRAIN_BATCH}), "
             f"{V3_ROUNDS} self-training round(s); {V3_SIZES['source_train']} source / {V3_SIZES['target_unlabelled']} "
             f"target sentences; up to {V3_SIZES['target_test']} test sentences "
             f"({test_sizes}).", "",
             "### Target test F1 (seqeval strict IOB2, %), mean ± sd over seeds (n seeds)", "",
             "| target | " + " | ".join(names[v] for v in V3_MAIN) + " |", "|---" * (len(V3_MAIN) + 1) + "|"]
    per_seed_avg: dict[str, dict[int, list]] = {v: {s: [] for s in V3_SEEDS} for v in V3_MAIN}
    for lang in ORDER:
        row = []
        for v in V3_MAIN:
            vals = []
            for seed in V3_SEEDS:
                c = cells.get((lang, v, seed))
                if c is not None and _final_f1(c) is not None:
                    vals.append(_final_f1(c))
                    per_seed_avg[v][seed].append(_final_f1(c))
            text = _fmt_seeds(vals, len(V3_SEEDS))
            row.append(text + (" (not defined yet)" if not vals and not PROTOCOL.defined(v) else ""))
        lines.append(f"| {lang} ({'CoNLL' if LANGUAGES[lang][0] == 'conll' else 'WikiAnn'}) | " + " | ".join(row) + " |")
    avg = []
    for v in V3_MAIN:  # each seed's six-target average, then mean ± sd over seeds
        complete = [a for a in map(_six_target_average, per_seed_avg[v].values()) if a is not None]
        done = sum(len(x) for x in per_seed_avg[v].values())
        avg.append(f"**{_fmt_seeds(complete, len(V3_SEEDS))}**" if len(complete) == len(V3_SEEDS)
                   else f"*pending* ({done}/{len(ORDER) * len(V3_SEEDS)} cells)")
    lines.append("| **average** | " + " | ".join(avg) + " |")
    lines += ["", *render_seed_averages(per_seed_avg)]
    lines += ["", *render_bootstrap(cells)]
    lines += ["", *render_bootstrap(cells, pairs=V3_OTHER_PAIRS, title="All seeds, the other pairs: paired bootstrap")]
    lines += ["", *render_bootstrap(
        cells, seeds=V3_SEEDS[:1], pairs=V3_INTERIM_PAIRS,
        title=f"Interim, seed {V3_SEEDS[0]} only: paired bootstrap",
        note="One seed: the interval covers test-sentence sampling only, not the spread between training seeds, "
             "so it is narrower than the three-seed one will be.")]
    prefix = complete_seed_prefix(cells)
    if 1 < len(prefix) < len(V3_SEEDS):  # a wider interim table once more seeds are whole, until all are
        lines += ["", *render_bootstrap(
            cells, seeds=prefix, pairs=V3_INTERIM_PAIRS,
            title=f"Interim, seeds {' and '.join(map(str, prefix))}: paired bootstrap",
            note=f"{len(prefix)} of {len(V3_SEEDS)} seeds: the interval resamples test sentences only; the seeds "
                 "enter as the draws measured, so it still understates the spread between training seeds.")]

    lines += ["", "### Per variant: test F1 per seed, pseudo-label F1 per round (mean over seeds), steps per round", "",
              "| target | variant | seeds | test F1 per seed (%) | pseudo-label F1 r0 → last (%) | steps per round | cell wall time (min, mean) |",
              "|---|---|---|---|---|---|---|"]
    for lang in ORDER:
        for v in (*V3_MAIN, *V3_ABLATIONS):
            seeds = sorted({s for (lg, vv, s) in planned if lg == lang and vv == v})
            if not seeds:
                continue
            mine = [cells[(lang, v, s)] for s in seeds if (lang, v, s) in cells]
            label = v + (" (one seed)" if v in V3_ABLATIONS else "") + ("" if PROTOCOL.defined(v) else " (not defined yet)")
            if not mine:
                lines.append(f"| {lang} | {label} | 0 of {len(seeds)} | *pending* | *pending* | | |")
                continue
            f1s = " / ".join(f"s{s}: " + (fmt(_final_f1(cells[(lang, v, s)])) if (lang, v, s) in cells else "*pending*")
                             for s in seeds)
            rounds = PROTOCOL.rounds_of(v) if v != "zeroshot" else ["r0"]
            pl = []
            for r in rounds:
                xs = [c["rounds"][r]["pseudo_label_f1"] for c in mine if (c["rounds"].get(r) or {}).get("pseudo_label_f1") is not None]
                pl.append(fmt(sum(xs) / len(xs)) if xs else "-")
            st = sorted({c["rounds"][r].get("optimizer_steps") for c in mine for r in rounds if c["rounds"].get(r)} - {None})
            wall = sum(s["seconds"] for c in mine for s in c["stages"].values()) / len(mine) / 60
            lines.append(f"| {lang} | {label} | {len(mine)} of {len(seeds)} | {f1s} | {' → '.join(pl)} | "
                         f"{', '.join(map(str, st))} | {wall:.0f} |")

    lines += ["", *render_denoise_effect(cells)]

    lines += ["", f"### Ablations on de and ar (test F1 of the last round, %; seed {V3_ABLATION_SEED} only, one seed)", "",
              "| target | default | global view only | local view only | no MLM | plain |", "|---|---|---|---|---|---|"]
    for lang in ABLATION_LANGS:
        vals = [fmt(_final_f1(cells[(lang, v, V3_ABLATION_SEED)])) if (lang, v, V3_ABLATION_SEED) in cells else "*pending*"
                for v in ("default", "global", "local", "nomlm", "plain")]
        lines.append(f"| {lang} | " + " | ".join(vals) + " |")

    lines += ["", "### Wall time per stage (s, median over the cells where it ran) and peak RSS (MB)", "",
              "| target | " + " | ".join(COST_KINDS[2:]) + " | sentence_counts | peak RSS |", "|---" * (len(COST_KINDS) - 2 + 3) + "|"]
    for lang in ORDER:
        ran: dict[str, list] = {}
        for (lg, _, _), c in cells.items():
            if lg == lang:
                for name, s in c["stages"].items():
                    if s.get("ran"):
                        ran.setdefault(name.split("@")[0], []).append(s)
        if not ran:
            lines.append(f"| {lang} | " + " | ".join(["*pending*"] * (len(COST_KINDS) - 2 + 1)) + " | |")
            continue
        med = [(f"{sorted(x['seconds'] for x in ran[k])[len(ran[k]) // 2]:.0f}" if k in ran else "-")
               for k in (*COST_KINDS[2:], "sentence_counts")]
        peak = max(s["peak_rss_mb"] for x in ran.values() for s in x)
        lines.append(f"| {lang} | " + " | ".join(med) + f" | {peak:.0f} |")

    commits = sorted({c["commit"][:8] for c in cells.values()})
    machines = sorted({c["machine"]["cpu"] or "?" for c in cells.values()})
    loads = sorted(s["load_before"] for c in cells.values() for s in c["stages"].values() if s.get("ran"))
    lines += ["", f"Measured cells: {len(cells)} of {len(plan_v3())} planned"
              + (f"; skipped, definition missing: {', '.join(skipped)} "
                 f"({sum(1 for _, v, _ in planned if v in skipped)} cells; see `--protocol v3 status`)" if skipped else "")
              + f"; project commit(s) {', '.join(commits) or '-'}; machine(s) {', '.join(machines) or '-'}; 1-minute load "
              f"average before a stage: median {loads[len(loads) // 2] if loads else '-'} (2 cores; above 2: the times are inflated).",
              "", render_estimate(estimate_v3(load_v2_cells())).rstrip("\n")]
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
