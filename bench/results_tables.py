"""The tables of a protocol with training seeds and a paired bootstrap (v3, v4) in docs/RESULTS.md:
test F1 mean ± sd per target and variant, each seed's six-target average, paired-bootstrap
differences, a row per variant and target, what a variant's denoising does to the pseudo labels,
wall time per stage, and the plan's cost from stage times. Every function takes a `Tables` (the
protocol, its main variants, seeds, short names and bootstrap settings), so that the protocols
render from one code; a cell not measured yet renders *pending*."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from results_harness import LANGUAGES, ORDER, R0_STAGES, Protocol, bench_module, fmt, stage_names

COST_KINDS = ("prepare", "encoder", "train_source", "initial_labels", "pseudo_label", "denoise", "train_target", "evaluate")


@dataclass(frozen=True)
class Tables:
    """What a protocol's tables show: ``main`` are the variants of the F1 table (its columns, in
    order), ``names`` their short names (bootstrap heads, per-seed averages); ``bootstrap`` holds
    ``n_resamples`` and ``seed``, read when rendering."""

    proto: Protocol
    main: tuple[str, ...]
    seeds: tuple[int, ...]
    names: dict[str, str]
    bootstrap: dict


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    from statistics import mean, stdev

    return mean(values), (stdev(values) if len(values) > 1 else None)


def fmt_seeds(values: list[float], planned: int) -> str:
    """mean ± sd (n) in F1 points; fewer seeds than planned are said; none: *pending*."""
    if not values:
        return "*pending*"
    m, sd = _mean_sd(values)
    text = f"{100 * m:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")
    return text + (f" (n={len(values)})" if len(values) == planned else f" (n={len(values)} of {planned})")


def final_f1(proto: Protocol, cell: dict) -> float | None:
    """Test F1 of the cell's last model."""
    return (cell["rounds"].get(proto.rounds_of(cell["variant"])[-1]) or {}).get("f1")


def counts_stack(proto: Protocol, cells: dict, lang: str, variant: str, seeds) -> "list | None":
    """(seeds, sentences, 3) counts of a variant's last model, or None unless every seed is measured."""
    import numpy as np

    sc = bench_module("sentence_counts")
    stacks = []
    for seed in seeds:
        c = cells.get((lang, variant, seed))
        if c is None:
            return None
        last = proto.rounds_of(variant)[-1]
        stacks.append(sc.decode_counts(c["sentence_counts"][last]))
    return np.stack(stacks)


def six_target_average(f1s: list[float]) -> float | None:
    """A seed's average over the targets, or None until every target of that seed is measured."""
    return sum(f1s) / len(f1s) if len(f1s) == len(ORDER) else None


# --------------------------------------------------------------------------- test F1


def render_f1_table(t: Tables, cells: dict, heads: dict[str, str]) -> list[str]:
    """Test F1 per target and main variant (mean ± sd over seeds), the average over targets, then
    each seed's six-target average; ``heads``: the column head of each main variant."""
    lines = ["### Target test F1 (seqeval strict IOB2, %), mean ± sd over seeds (n seeds)", "",
             "| target | " + " | ".join(heads[v] for v in t.main) + " |", "|---" * (len(t.main) + 1) + "|"]
    per_seed_avg: dict[str, dict[int, list]] = {v: {s: [] for s in t.seeds} for v in t.main}
    for lang in ORDER:
        row = []
        for v in t.main:
            vals = []
            for seed in t.seeds:
                c = cells.get((lang, v, seed))
                if c is not None and final_f1(t.proto, c) is not None:
                    vals.append(final_f1(t.proto, c))
                    per_seed_avg[v][seed].append(final_f1(t.proto, c))
            text = fmt_seeds(vals, len(t.seeds))
            row.append(text + (" (not defined yet)" if not vals and not t.proto.defined(v) else ""))
        lines.append(f"| {lang} ({'CoNLL' if LANGUAGES[lang][0] == 'conll' else 'WikiAnn'}) | " + " | ".join(row) + " |")
    avg = []
    for v in t.main:  # each seed's six-target average, then mean ± sd over seeds
        complete = [a for a in map(six_target_average, per_seed_avg[v].values()) if a is not None]
        done = sum(len(x) for x in per_seed_avg[v].values())
        avg.append(f"**{fmt_seeds(complete, len(t.seeds))}**" if len(complete) == len(t.seeds)
                   else f"*pending* ({done}/{len(ORDER) * len(t.seeds)} cells)")
    lines.append("| **average** | " + " | ".join(avg) + " |")
    return lines + ["", *render_seed_averages(t, per_seed_avg)]


def render_seed_averages(t: Tables, per_seed_avg: dict) -> list[str]:
    """Each seed's six-target average per variant: the seed-to-seed spread the bootstrap does not see."""
    lines = ["### Six-target average test F1 per seed (%)", "",
             "| seed | " + " | ".join(t.names[v] for v in t.main) + " |", "|---" * (len(t.main) + 1) + "|"]
    for seed in t.seeds:
        row = []
        for v in t.main:
            got, average = per_seed_avg[v][seed], six_target_average(per_seed_avg[v][seed])
            row.append(f"{100 * average:.1f}" if average is not None else f"*pending* ({len(got)} of {len(ORDER)})")
        lines.append(f"| {seed} | " + " | ".join(row) + " |")
    return lines


# --------------------------------------------------------------------------- paired bootstrap


def render_bootstrap(t: Tables, cells: dict, pairs, seeds=None, title: str | None = None,
                     note: str = "Needs all seeds of both variants.") -> list[str]:
    """A paired-bootstrap table over ``seeds`` (default: all): per target and on the six-target
    average, F1(a) − F1(b) with its 95% percentile interval for each (a, b) of ``pairs``; *pending*
    until every seed of both variants is measured."""
    bs = bench_module("bootstrap")
    seeds = t.seeds if seeds is None else seeds
    n, seed0 = t.bootstrap["n_resamples"], t.bootstrap["seed"]
    heads = [f"{t.names[a]} − {t.names[b]}" for a, b in pairs]
    lines = [f"### {title or 'Paired bootstrap: ' + ' and '.join(heads)} (test F1 points, 95% percentile interval)", "",
             f"Test sentences resampled with replacement ({n} resamples, seed {seed0} + the target's index in the table); "
             "the same resample for both variants and every seed; per resample each seed's counts are summed, its F1 "
             "computed and averaged over the seeds. The average resamples each target independently and averages the "
             f"six differences. {note}", "",
             "| target | " + " | ".join(heads) + " |", "|---" * (len(pairs) + 1) + "|"]
    diffs: dict[tuple, list] = {pair: [] for pair in pairs}
    points: dict[tuple, list] = {pair: [] for pair in pairs}

    def interval(point, low, high):
        return f"{100 * point:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"

    for i, lang in enumerate(ORDER):
        row = []
        for pair in pairs:
            a, b = (counts_stack(t.proto, cells, lang, v, seeds) for v in pair)
            if a is None or b is None:
                row.append("*pending*")
                continue
            d = bs.bootstrap_differences(a, b, n, seed0 + i)
            point = bs.mean_f1(a) - bs.mean_f1(b)
            diffs[pair].append(d)
            points[pair].append(point)
            iv = bs.interval_from(point, d, (len(a), len(b)))
            row.append(interval(iv.diff, iv.low, iv.high))
        lines.append(f"| {lang} | " + " | ".join(row) + " |")
    avg = []
    for pair in pairs:
        if len(diffs[pair]) == len(ORDER):
            iv = bs.interval_from(sum(points[pair]) / len(ORDER), sum(diffs[pair]) / len(ORDER), (len(seeds),) * 2)
            avg.append(f"**{interval(iv.diff, iv.low, iv.high)}**")
        else:
            avg.append(f"*pending* ({len(diffs[pair])}/{len(ORDER)} targets)")
    lines.append("| **average** | " + " | ".join(avg) + " |")
    return lines


def complete_seed_prefix(t: Tables, cells: dict) -> tuple:
    """The leading seeds whose every defined main cell (all targets) is measured: those an interim
    table can use without mixing seeds across targets."""
    done = []
    for seed in t.seeds:
        if not all((lang, v, seed) in cells for lang in ORDER for v in t.main if t.proto.defined(v)):
            break
        done.append(seed)
    return tuple(done)


def render_interim(t: Tables, cells: dict, pairs) -> list[str]:
    """The first seed's paired-bootstrap table, and once more seeds are whole (all targets, every
    defined main variant), one over those seeds, until all are."""
    lines = render_bootstrap(
        t, cells, pairs, seeds=t.seeds[:1], title=f"Interim, seed {t.seeds[0]} only: paired bootstrap",
        note="One seed: the interval covers test-sentence sampling only, not the spread between training seeds, "
             "so it is narrower than the three-seed one will be.")
    prefix = complete_seed_prefix(t, cells)
    if 1 < len(prefix) < len(t.seeds):
        lines += ["", *render_bootstrap(
            t, cells, pairs, seeds=prefix, title=f"Interim, seeds {' and '.join(map(str, prefix))}: paired bootstrap",
            note=f"{len(prefix)} of {len(t.seeds)} seeds: the interval resamples test sentences only; the seeds "
                 "enter as the draws measured, so it still understates the spread between training seeds.")]
    return lines


# --------------------------------------------------------------------------- per variant, pseudo labels, cost


def render_per_variant(t: Tables, cells: dict, planned: list, variants, one_seed=()) -> list[str]:
    """A row per target and variant: test F1 per seed, the pseudo-label F1 of each model (mean over
    seeds), optimiser steps per round and the cell's wall time; ``planned`` includes undefined
    variants, ``one_seed`` names the variants planned on one seed."""
    lines = ["### Per variant: test F1 per seed, pseudo-label F1 per round (mean over seeds), steps per round", "",
             "| target | variant | seeds | test F1 per seed (%) | pseudo-label F1 r0 → last (%) | steps per round | cell wall time (min, mean) |",
             "|---|---|---|---|---|---|---|"]
    for lang in ORDER:
        for v in variants:
            seeds = sorted({s for (lg, vv, s) in planned if lg == lang and vv == v})
            if not seeds:
                continue
            mine = [cells[(lang, v, s)] for s in seeds if (lang, v, s) in cells]
            label = v + (" (one seed)" if v in one_seed else "") + ("" if t.proto.defined(v) else " (not defined yet)")
            if not mine:
                lines.append(f"| {lang} | {label} | 0 of {len(seeds)} | *pending* | *pending* | | |")
                continue
            f1s = " / ".join(f"s{s}: " + (fmt(final_f1(t.proto, cells[(lang, v, s)])) if (lang, v, s) in cells else "*pending*")
                             for s in seeds)
            rounds = t.proto.rounds_of(v) if v != "zeroshot" else ["r0"]
            pl = []
            for r in rounds:
                xs = [c["rounds"][r]["pseudo_label_f1"] for c in mine if (c["rounds"].get(r) or {}).get("pseudo_label_f1") is not None]
                pl.append(fmt(sum(xs) / len(xs)) if xs else "-")
            st = sorted({c["rounds"][r].get("optimizer_steps") for c in mine for r in rounds if c["rounds"].get(r)} - {None})
            wall = sum(s["seconds"] for c in mine for s in c["stages"].values()) / len(mine) / 60
            lines.append(f"| {lang} | {label} | {len(mine)} of {len(seeds)} | {f1s} | {' → '.join(pl)} | "
                         f"{', '.join(map(str, st))} | {wall:.0f} |")
    return lines


def label_change(cell: dict, rnd: str) -> tuple[float, float, float] | None:
    """(hard F1, soft F1, Brier) of a round's pseudo labels after its denoising minus before
    (F1 in points, Brier x 1000); None where the cell did not record both sides."""
    pl = ((cell.get("rounds") or {}).get(rnd) or {}).get("pseudo_label") or {}
    parts = [pl.get(k) for k in ("before", "after", "soft_before", "soft_after")]
    if any(p is None for p in parts):
        return None
    before, after, soft_before, soft_after = parts
    return (100 * (after["f1"] - before["f1"]), 100 * (soft_after["f1"] - soft_before["f1"]),
            1000 * (soft_after["brier"] - soft_before["brier"]))


LABEL_CHANGE_DIGITS = (1, 1, 2)  # decimals of label_change's hard F1, soft F1 (points) and Brier (x 1000)


def hard_and_soft_f1_up(change: tuple[float, float, float]) -> bool:
    return change[0] > 0 and change[1] > 0


def render_denoise_effect(t: Tables, cells: dict, variant: str, goal: str,
                          raised: Callable[[tuple], bool] = hard_and_soft_f1_up,
                          raised_text: str = "raised both the hard and the soft F1") -> list[str]:
    """Per target and seed, what the variant's denoising did to each round's pseudo labels on the
    target corpus (hard F1, soft F1, Brier against gold), and on how many targets it ``raised``
    their quality on every seed (``goal``: what the issue asks)."""
    rounds = t.proto.rounds_of(variant)[1:]
    lines = [f"### What the {variant} variant's denoising does to the pseudo labels (after − before, per seed)", "",
             "Hard and soft pseudo-label F1 in points, Brier score ×1000 (lower is better), on the target corpus "
             "against its gold labels; seeds " + ", ".join(map(str, t.seeds)) + ".", "",
             "| target | round | hard F1 | soft F1 | Brier ×1000 |", "|---|---|---|---|---|"]
    count = {rnd: 0 for rnd in rounds}
    for lang in ORDER:
        for rnd in rounds:
            per_seed = [label_change(cells[(lang, variant, s)], rnd) if (lang, variant, s) in cells else None
                        for s in t.seeds]
            cols = [" / ".join("*pending*" if ch is None else f"{ch[i]:+.{digits}f}" for ch in per_seed)
                    for i, digits in enumerate(LABEL_CHANGE_DIGITS)]
            if all(ch is not None and raised(ch) for ch in per_seed):
                count[rnd] += 1
            lines.append(f"| {lang} | {rnd} | " + " | ".join(cols) + " |")
    lines += ["", f"Targets where the denoising {raised_text} on every seed: "
              + "; ".join(f"{rnd}: {n} of {len(ORDER)}" for rnd, n in count.items()) + f" ({goal})."]
    return lines


def render_wall_times(cells: dict, title: str = "") -> list[str]:
    """Median wall seconds per stage kind and target over the given cells' stages that ran, and
    their peak RSS."""
    lines = [f"### Wall time per stage (s, median over the cells where it ran) and peak RSS (MB){title}", "",
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
    return lines


def render_measured(t: Tables, cells: dict, planned: list) -> str:
    """How much of the plan (``planned``: undefined variants included) is measured, skipped, and where."""
    defined = [c for c in planned if t.proto.defined(c[1])]
    skipped = sorted({v for _, v, _ in planned if not t.proto.defined(v)})
    commits = sorted({c["commit"][:8] for c in cells.values()})
    machines = sorted({c["machine"]["cpu"] or "?" for c in cells.values()})
    loads = sorted(s["load_before"] for c in cells.values() for s in c["stages"].values() if s.get("ran"))
    return (f"Measured cells: {len(cells)} of {len(defined)} planned"
            + (f"; skipped, definition missing: {', '.join(skipped)} "
               f"({sum(1 for _, v, _ in planned if v in skipped)} cells; see `--protocol {t.proto.name} status`)" if skipped else "")
            + f"; project commit(s) {', '.join(commits) or '-'}; machine(s) {', '.join(machines) or '-'}; 1-minute load "
            f"average before a stage: median {loads[len(loads) // 2] if loads else '-'} (2 cores; above 2: the times are inflated).")


def plan_seconds(proto: Protocol, plan: list, stage_seconds: Callable[[str, str, str], float],
                 stand_in: dict[str, str] | None = None) -> dict[tuple, float]:
    """Estimated wall seconds of each cell of ``plan``, in plan order, with DVC's sharing inside a
    work folder: r0's stages and the first round's pseudo labels run once per folder, a variant's
    rounds once per cell, then its per-sentence counts. ``stage_seconds(lang, variant, stage)``
    prices one stage; an undefined variant is priced as its ``stand_in`` (default: as defined)."""
    done: set = set()
    per_cell = {}
    for lang, variant, seed in plan:
        like = (stand_in or {}).get(variant, variant) if not proto.defined(variant) else variant
        folder = proto.workdir(lang, like, seed)
        secs = 0.0
        for name in stage_names(proto.rounds_of(like)):
            key = (folder, name) if name in R0_STAGES else (folder, variant, name)
            if key not in done:
                done.add(key)
                secs += stage_seconds(lang, like, name)
        per_cell[(lang, variant, seed)] = secs + stage_seconds(lang, like, "sentence_counts")
    return per_cell
