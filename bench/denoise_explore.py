"""Which denoising settings raise the pseudo-label quality of r1 on the real corpora? A replay:
no training, only the denoising step, so that many settings cost minutes instead of hours.

    python bench/denoise_explore.py ../bench-explore/v3/de-s0 ../bench-explore/v3/ar-s0
    python bench/denoise_explore.py --out bench/results/denoise_explore.json WORK...

Each WORK is a `bench/results.py` work folder (protocol v3) whose `pseudo_label@r1` output exists
(`rounds/r1/pseudo`: the source model's span vectors and soft predictions on the target corpus,
with the corpus's hidden gold tags for scoring). For every setting below the script runs
:func:`glode.denoising.update.denoise` on those arrays, starting from the model's own labels Y0 (the
`denoise.start: model` round), and scores the refined labels against gold: span-level hard
P/R/F1 (the same score as `metrics/denoise/r1.json`), soft F1, the Brier score, and the entity
mass the labels put on gold-O spans. "plain" is no denoising at all (plain self-training's
labels). Settings that change the span vectors themselves (`denoise.projection`,
`denoise.features`) need the pseudo_label stage rerun and are not replayed here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from glode.denoising.align import aligned_labels, class_weights  # noqa: E402
from glode.denoising.update import DenoiseInput, denoise  # noqa: E402
from glode.label_table import class_ids, initial_soft_labels  # noqa: E402
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, SPANS_FILE, SPANS_KIND, TARGET_REPS,  # noqa: E402
                                 load_array)
from glode.settings import DenoiseSettings, IndexOptions  # noqa: E402
from glode.tables import read_table  # noqa: E402

OFF = {"use_global": False, "use_local": False}
# name -> DenoiseSettings fields (and the EMA weight m, and denoise.align) on top of BASE (the committed defaults)
SETTINGS = {
    "plain": OFF,
    "default": {},
    "no-gate": {"gate": "none"},
    "global-only": {"use_local": False},
    "local-only": {"use_global": False},
    "proto-source": {"prototype_from": "source"},
    "local-cap-0.4": {"local_cap": 0.4},
    "m-0.5-no-gate": {"m": 0.5, "gate": "none"},
    "select-0.9": {**OFF, "select": 0.9},
    "select-0.8": {**OFF, "select": 0.8},
    "select-0.7": {**OFF, "select": 0.7},
    "select-0.8-rest-0.5": {**OFF, "select": 0.8, "select_rest": 0.5},
    "select-0.8+views": {"select": 0.8},
    "align-0.5": {**OFF, "align": 0.5},
    "align-1.0": {**OFF, "align": 1.0},
    "align-1.0+views": {"align": 1.0},
}
BASE = {"m": 0.8, "k": 300, "o_keep_rate": 0.03, "local_scale": 0.9, "local_cap": 1.0, "prototype": "mean",
        "prototype_from": "all", "momentum": 0.99, "use_global": True, "use_local": True, "gate": "agree",
        "select": 1.0, "select_rest": 0.0, "seed": 0, "index": "auto", "auto_threshold": 25000, "nprobe": 32}


def load_round(work: Path, round_name: str = "r1"):
    pseudo = work / "rounds" / round_name / "pseudo"
    spans = read_table(pseudo / SPANS_FILE, SPANS_KIND)
    classes = json.loads(spans.attrs["glode"]["classes"])
    Y0 = initial_soft_labels(spans, classes)
    Q, S = load_array(pseudo / TARGET_REPS), load_array(pseudo / SOURCE_REPS)
    s_labels = load_array(pseudo / SOURCE_LABELS)
    gold = class_ids(spans.gold.to_numpy(dtype=object), classes)
    return classes, Y0, Q, S, s_labels, gold


def error_kinds(spans, pred: np.ndarray, gold: np.ndarray) -> dict:
    """What kind of mistake each wrong pseudo entity is, and why each missed gold entity was
    missed: only type errors on the right span can be fixed by a view that re-types spans."""
    from collections import defaultdict

    sid, a, b = (spans[c].to_numpy() for c in ("sentence_id", "start", "end"))
    by_sentence = {"gold": defaultdict(list), "pred": defaultdict(list)}
    for i in np.flatnonzero(gold > 0):
        by_sentence["gold"][sid[i]].append(i)
    for i in np.flatnonzero(pred > 0):
        by_sentence["pred"][sid[i]].append(i)
    kinds, missed = defaultdict(int), defaultdict(int)
    for i in np.flatnonzero(pred > 0):
        if gold[i] == pred[i]:
            kinds["correct"] += 1
        elif gold[i] > 0:
            kinds["right span, wrong type"] += 1
        else:
            ov = [j for j in by_sentence["gold"][sid[i]] if a[j] < b[i] and a[i] < b[j]]
            kinds["no gold entity overlaps" if not ov else "wrong boundary" + (
                ", right type" if any(gold[j] == pred[i] for j in ov) else ", wrong type")] += 1
    for j in np.flatnonzero(gold > 0):
        if pred[j] == gold[j]:
            continue
        if pred[j] > 0:
            missed["predicted with a wrong type"] += 1
        else:
            ov = [i for i in by_sentence["pred"][sid[j]] if a[j] < b[i] and a[i] < b[j]]
            missed["overlapped by a predicted entity" if ov else "nothing predicted there"] += 1
    return {"predicted": dict(kinds), "gold_missed": dict(missed),
            "predicted_per_class": np.bincount(pred, minlength=gold.max() + 1).tolist(),
            "gold_per_class": np.bincount(gold[gold >= 0], minlength=gold.max() + 1).tolist()}


def views_vs_label(G: np.ndarray, L: np.ndarray, Y0: np.ndarray, gold: np.ndarray) -> dict:
    """Where both views admit exactly one and the same class and it is not the label's top
    class: how often is the view right, how often the label? (G, L: the admitted sets.)"""
    both = G & L
    single = both.sum(1) == 1
    proposal, label = both.argmax(1), Y0.argmax(1)
    differs = single & (proposal != label) & (gold >= 0)
    return {"spans": int(len(gold)), "views_agree_on_one_class": int(single.sum()), "that_class_differs_from_label": int(differs.sum()),
            "view_right": int((differs & (proposal == gold)).sum()), "label_right": int((differs & (label == gold)).sum())}


def replay(work: Path, settings: dict[str, dict]) -> dict:
    classes, Y0, Q, S, s_labels, gold = load_round(work)
    spans = read_table(work / "rounds" / "r1" / "pseudo" / SPANS_FILE, SPANS_KIND)
    errors = error_kinds(spans, Y0.argmax(1), gold)
    print(f"  {work.name}: r0's pseudo labels: {errors}", flush=True)
    rows = {}
    for name, own in settings.items():
        kw = {**BASE, **own}
        m = kw.pop("m")
        t0 = time.perf_counter()
        start = Y0
        if kw.pop("align", 0) > 0:  # denoise.align: the model's predictions reweighted and decoded again first
            probs = spans[classes].to_numpy(np.float32)
            start = aligned_labels(spans, probs, class_weights(probs, s_labels, own["align"]))
        res = denoise(DenoiseInput(Q, start, S, s_labels), DenoiseSettings(**kw), m, IndexOptions())
        s = res.summary(gold=gold, class_names=classes)
        pl = s["gold"]
        after, soft = pl["after"], pl["soft_after"]
        if name == "default":
            agreement = views_vs_label(res.G, res.L, Y0, gold)
            print(f"  {work.name}: where both views agree on one class that is not the label's: {agreement}", flush=True)
        rows[name] = {"settings": own, "seconds": round(time.perf_counter() - t0, 2),
                      "precision": after["precision"], "recall": after["recall"], "f1": after["f1"],
                      "soft_f1": soft["f1"], "brier": soft["brier"],
                      "entity_mass_on_gold_o": soft.get("entity_mass_on_gold_o"),
                      "changed": s["changed"]["total"], "demoted": s.get("select", {}).get("demoted", 0)}
        print(f"  {work.name:10s} {name:22s} P {after['precision']:.4f} R {after['recall']:.4f} F1 {after['f1']:.4f} "
              f"soft F1 {soft['f1']:.4f} Brier {soft['brier']:.5f}", flush=True)
    out = {"spans": int(len(Y0)), "classes": classes, "rows": rows, "r0_errors": errors}
    if "default" in rows:
        out["views_vs_label"] = agreement
    return out


def markdown(out: dict) -> str:
    """The replays as a Markdown table: every setting's pseudo-label quality per folder, with the
    difference to plain self-training's labels in hard F1 points."""
    lines = ["| target | setting | P | R | F1 | ΔF1 vs plain | soft F1 | Brier | entity mass on gold O |",
             "|---|---|---|---|---|---|---|---|---|"]
    for folder, r in out["folders"].items():
        plain = r["rows"].get("plain", {}).get("f1")
        for name in [n for n in SETTINGS if n in r["rows"]] + [n for n in r["rows"] if n not in SETTINGS]:
            x = r["rows"][name]
            delta = f"{100 * (x['f1'] - plain):+.1f}" if plain is not None and name != "plain" else ""
            lines.append(f"| {folder} | {name} | {100 * x['precision']:.1f} | {100 * x['recall']:.1f} | {100 * x['f1']:.1f} "
                         f"| {delta} | {100 * x['soft_f1']:.1f} | {x['brier']:.4f} | {x['entity_mass_on_gold_o']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="*", type=Path, help="v3 work folders with rounds/r1/pseudo")
    ap.add_argument("--only", nargs="*", help="setting names (default: all)")
    ap.add_argument("--name", help="the row label of a single WORK folder (default: the folder's name)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "denoise_explore.json")
    ap.add_argument("--markdown", action="store_true", help="print the stored replays as a Markdown table (also "
                    "into docs/RESULTS.md between its denoise-explore markers) and stop")
    args = ap.parse_args()
    if args.markdown:
        table = markdown(json.loads(args.out.read_text()))
        page = ROOT / "docs" / "RESULTS.md"
        begin, end = "<!-- denoise-explore:begin (python bench/denoise_explore.py --markdown) -->", "<!-- denoise-explore:end -->"
        text = page.read_text()
        if begin in text and end in text:  # the table's place in RESULTS.md
            head, rest = text.split(begin, 1)
            page.write_text(head + begin + "\n" + table + end + rest.split(end, 1)[1])
            print(f"wrote the table into {page}")
        print(table, end="")
        return 0
    settings = {k: v for k, v in SETTINGS.items() if not args.only or k in args.only}
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out["command"] = "python bench/denoise_explore.py " + " ".join(str(w) for w in args.work)
    for work in args.work:
        snapshot = json.loads((work / "SNAPSHOT.json").read_text()) if (work / "SNAPSHOT.json").exists() else {"commit": None}
        result = replay(work, settings)
        prev = out.get("folders", {}).get(args.name if args.name and len(args.work) == 1 else work.name, {}).get("rows", {})
        result["rows"] = {**prev, **result["rows"]}
        result["commit"] = snapshot["commit"]
        label = args.name if args.name and len(args.work) == 1 else work.name
        result["folder"] = str(work)
        out.setdefault("folders", {})[label] = result
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
