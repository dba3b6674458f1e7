"""What do GLoDe's two views know that the model does not? Precision of the pseudo labels
grouped by view agreement, beside the same labels grouped by the model's own confidence.

    python bench/view_diagnostics.py                      # protocol v2 GLoDe cells, de and ar, r1 and r2
    python bench/view_diagnostics.py --langs de --rounds r1

Needs the work folders of `bench/results.py` with the GLoDe cell measured (the stage outputs are
restored from DVC's run cache; nothing is retrained). Restoring rewrites the folder's
`params.yaml` and runs `dvc repro` there: never run this while `bench/results.py run` works in
the same folder. For each round it takes the cached `pseudo_label` output (the previous model's
reduced span vectors and soft predictions, the starting labels of `denoise.start=model`) and
computes the global and local views with the denoising stage's own call (`glode.denoise.denoise`)
and the folder's `params.yaml` settings. Then, over the spans predicted as entities, it scores
against the corpus's hidden gold tags:

* precision by agreement: the label's class admitted by both views, the global only, the local
  only, neither (a gate or a filter built on the views can only be as good as this split);
* precision by confidence quartile (the largest soft-label probability): the signal the
  model already has without any view;
* where each view's own best class (nearest prototype, neighbour majority) disagrees with the
  label: how often the label is right and how often the view is.

Writes `bench/results/view_diagnostics.json` (languages measured by an earlier call of the same
protocol are kept) and prints Markdown tables for every language in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

import results as harness  # noqa: E402
from denoise_replay import load_round, restore  # noqa: E402
from glode.label_table import initial_soft_labels  # noqa: E402
from glode.steps.denoise import ema_weight  # noqa: E402
from glode.denoise import denoise  # noqa: E402


def precision(mask: np.ndarray, label: np.ndarray, gold: np.ndarray) -> dict:
    n = int(mask.sum())
    return {"spans": n, "precision": round(float(np.mean(gold[mask] == label[mask])), 4) if n else None}


def diagnose_round(work: Path, rnd: str, dp: dict, k: int) -> dict:
    spans, classes, gold, Q, S, s_labels = load_round(work, rnd)
    Y = initial_soft_labels(spans, classes)
    label = Y.argmax(axis=1)
    rows = np.arange(len(label))
    # the views as the stage computes them (m and the gate change Y_new only, not G, L, g or n)
    m = ema_weight(rnd, dp["m-start"], dp["m-step"], dp["m-min"])
    res = denoise(Q, Y, S, s_labels, m=m, k=k, o_keep_rate=dp["o-keep-rate"], local_scale=dp["local-scale"],
                  prototype=dp["prototype"], momentum=dp["momentum"], use_global=True, use_local=True,
                  gate=dp["gate"], seed=dp["seed"], index=dp["index"], auto_threshold=dp["auto-threshold"],
                  nprobe=dp["nprobe"])

    entity = label != 0
    in_g, in_l = res.G[rows, label], res.L[rows, label]
    out = {"entity_spans": precision(entity, label, gold), "agreement": {}, "confidence_quartiles": [], "view_best_class": {}}
    for name, mask in (("both", in_g & in_l), ("global_only", in_g & ~in_l), ("local_only", ~in_g & in_l),
                       ("neither", ~in_g & ~in_l)):
        out["agreement"][name] = precision(entity & mask, label, gold)
    conf = Y.max(axis=1)
    edges = np.quantile(conf[entity], [0.0, 0.25, 0.5, 0.75, 1.0])
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        mask = entity & (conf >= lo) & ((conf < hi) if i < 3 else (conf <= hi))
        out["confidence_quartiles"].append({"from": round(float(lo), 3), "to": round(float(hi), 3)} | precision(mask, label, gold))
    best = {"nearest_prototype": np.where(res.has_prototype[None, :], res.g, -np.inf).argmax(axis=1),
            "neighbour_majority": res.n.argmax(axis=1)}
    for name, view in best.items():
        differ = entity & (view != label)
        out["view_best_class"][name] = {"spans": int(differ.sum()),
                                        "label_right": precision(differ, label, gold)["precision"],
                                        "view_right": precision(differ, view, gold)["precision"]}
    return out


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=sorted(harness.PROTOCOLS), default="v2")
    ap.add_argument("--langs", nargs="+", default=harness.ABLATION_LANGS)
    ap.add_argument("--rounds", nargs="+", default=["r1", "r2"])
    ap.add_argument("--workdir", default=str(ROOT.parent / "bench-work"))
    args = ap.parse_args(argv)
    proto = harness.PROTOCOLS[args.protocol]
    path = ROOT / "bench" / "results" / "view_diagnostics.json"
    report = {"protocol": proto.name, "languages": {}}
    if path.exists():  # keep the languages measured by an earlier call of the same protocol
        earlier = json.loads(path.read_text())
        if earlier.get("protocol") == proto.name:
            report = earlier
    for lang in args.langs:
        if not proto.cell_path(lang, "glode").exists():
            print(f"{lang}: the {proto.name} glode cell is not measured yet; skipped", file=sys.stderr)
            continue
        work = Path(args.workdir) / proto.work_subdir / lang
        restore(work, lang, "glode")
        params = harness.yaml.safe_load((work / "params.yaml").read_text())
        report["languages"][lang] = report["languages"].get(lang, {}) | {
            r: diagnose_round(work, r, params["denoise"], params["k"]) for r in args.rounds}
        print(f"{lang}: done", file=sys.stderr, flush=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print("| target | round | entity spans: precision | both views admit | global only | local only | neither | "
          "confidence quartiles, low to high |\n|---|---|---|---|---|---|---|---|")
    for lang, rounds in report["languages"].items():
        for rnd, r in rounds.items():
            agree = " | ".join(f"{pct(a['precision'])} ({a['spans']})" for a in r["agreement"].values())
            quart = " / ".join(pct(q["precision"]) for q in r["confidence_quartiles"])
            print(f"| {lang} | {rnd} | {pct(r['entity_spans']['precision'])} ({r['entity_spans']['spans']}) | {agree} | {quart} |")
    print("\n| target | round | view | entity labels it disagrees with | label right | view right |\n|---|---|---|---|---|---|")
    for lang, rounds in report["languages"].items():
        for rnd, r in rounds.items():
            for name, v in r["view_best_class"].items():
                print(f"| {lang} | {rnd} | {name.replace('_', ' ')} | {v['spans']} | {pct(v['label_right'])} | {pct(v['view_right'])} |")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
