"""Replay GLoDe's denoising step on cached rounds of the real corpora: which starting labels and
which edits make the pseudo labels better?

    python bench/denoise_replay.py                       # the 1-epoch glode cells of every language
    python bench/denoise_replay.py --variant glode3 --langs de ar
    python bench/denoise_replay.py --protocol v2 --langs de ar   # the current defaults' rounds

Needs the work folders of `bench/results.py` with the variant's cell measured: the stage outputs
are restored from DVC's run cache (nothing is retrained; the script stops if a stage would run).
Restoring rewrites the folder's `params.yaml` and runs `dvc repro` there: never run this while
`bench/results.py run` works in the same folder.
For each round it takes that round's cached `pseudo_label` output (the previous model's span
vectors and soft predictions) and the previous round's GLoDe labels, and reruns the denoising
step of the current checkout with:

* start = ``labels`` (GLoDe: refine the previous round's labels) or ``model`` (the previous
  model's fresh predictions, `denoise.start=model`);
* gate = ``none`` or ``agree`` (`denoise.gate`);
* no denoising at all (the starting labels themselves).

Scores are span-level pseudo-label P/R/F1 against the target corpus's hidden gold tags (the
same score as `metrics/denoise/rN.json`). Writes `bench/results/denoise_replay[_VARIANT].json`
and prints a Markdown table. At r1 both starts are the source model's labels Y0; at r2 they
differ: `labels` carries r1's refined labels, `model` uses the r1 model's predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

import results as harness  # noqa: E402
from glode.label_table import class_ids, initial_soft_labels, read_labels_dense  # noqa: E402
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, SPANS_FILE, SPANS_KIND, TARGET_REPS,  # noqa: E402
                                 load_array)
from glode.steps.denoise import ema_weight  # noqa: E402
from glode.denoise import denoise, span_prf  # noqa: E402
from glode.tables import read_table  # noqa: E402


def restore(work: Path, lang: str, variant: str) -> None:
    """Check out the variant's cached outputs up to denoise@r2; refuse to compute anything."""
    _, overrides, rounds = harness.VARIANTS[variant]
    harness.write_params(work, lang, overrides or {})
    env = dict(os.environ, PYTHONPATH=str(Path(work).resolve()), DVC_NO_ANALYTICS="1")
    for name in harness.stage_names(rounds):
        if name.startswith("evaluate") or name == f"train_target@{rounds[-1]}":
            continue
        proc = subprocess.Popen(["dvc", "repro", "--single-item", name], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if "Running stage" in line:
                proc.kill()
                sys.exit(f"{work}: stage {name} is not in the run cache (run `bench/results.py run --only {lang}:{variant}` first)")
        if proc.wait() != 0:
            sys.exit(f"{work}: dvc repro --single-item {name} failed")


def score(y: np.ndarray, gold: np.ndarray) -> dict:
    r = span_prf(y, gold)
    return {"f1": round(r["f1"], 4), "precision": round(r["precision"], 4), "recall": round(r["recall"], 4),
            "predicted": r["predicted"], "correct": r["correct"]}


def load_round(work: Path, rnd: str):
    """A round's cached `pseudo_label` output: (spans, classes, gold ids, Q, S, source labels)."""
    pseudo = work / "rounds" / rnd / "pseudo"
    spans = read_table(pseudo / SPANS_FILE, SPANS_KIND)
    classes = json.loads(spans.attrs["glode"]["classes"])
    gold = class_ids(spans.gold.to_numpy(dtype=object), classes)
    Q = load_array(pseudo / TARGET_REPS)
    S = load_array(pseudo / SOURCE_REPS)
    s_labels = load_array(pseudo / SOURCE_LABELS)
    return spans, classes, gold, Q, S, s_labels


def replay_round(work: Path, rnd: str, denoise_params: dict, k: int) -> dict:
    prev = f"r{int(rnd[1:]) - 1}"
    spans, classes, gold, Q, S, s_labels = load_round(work, rnd)
    m = ema_weight(rnd, denoise_params["m-start"], denoise_params["m-step"], denoise_params["m-min"])
    starts = {"labels": read_labels_dense(work / "rounds" / prev / "labels.parquet", spans, classes),
              "model": initial_soft_labels(spans, classes)}
    out = {"m": m}
    for start, Y in starts.items():
        out[start] = {"no_denoising": score(Y.argmax(1), gold)}
        for gate in ("none", "agree"):
            res = denoise(Q, Y, S, s_labels, m=m, k=k, o_keep_rate=denoise_params["o-keep-rate"],
                          local_scale=denoise_params["local-scale"], prototype=denoise_params["prototype"],
                          momentum=denoise_params["momentum"], gate=gate, seed=denoise_params["seed"])
            changed = res.summary()["changed"]
            out[start][f"gate_{gate}"] = score(res.y_new, gold) | {"changed": changed}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=sorted(harness.PROTOCOLS), default="v1",
                    help="whose work folders (default v1: the 1-epoch table this script was written for)")
    ap.add_argument("--variant", default="glode", choices=["glode", "glode3"], help="whose cached rounds to replay")
    ap.add_argument("--langs", nargs="+", default=harness.ORDER)
    ap.add_argument("--workdir", default=str(ROOT.parent / "bench-work"))
    args = ap.parse_args(argv)
    suffix = harness.WORKDIR_SUFFIX.get(args.variant, "")
    proto = harness.PROTOCOLS[args.protocol]
    report = {"protocol": proto.name, "variant": args.variant, "languages": {}}
    for lang in args.langs:
        work = Path(args.workdir) / proto.work_subdir / f"{lang}{suffix}"
        if not (work / "SNAPSHOT.json").exists():
            sys.exit(f"{work}: no bench work folder; run bench/results.py first")
        restore(work, lang, args.variant)
        params = harness.yaml.safe_load((work / "params.yaml").read_text())
        report["languages"][lang] = {r: replay_round(work, r, params["denoise"], params["k"]) for r in ("r1", "r2")}
        print(f"{lang}: done", file=sys.stderr, flush=True)
    name = "denoise_replay.json" if args.variant == "glode" else f"denoise_replay_{args.variant}.json"
    if proto.name != "v1":
        name = name.replace(".json", f"_{proto.name}.json")
    path = ROOT / "bench" / "results" / name
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"| target | round | GLoDe labels, no denoising | GLoDe (labels, gate none) | labels, gate agree | "
          f"fresh predictions, no denoising | fresh, gate none | fresh, gate agree |\n|---|---|---|---|---|---|---|---|")
    for lang, rounds in report["languages"].items():
        for rnd, r in rounds.items():
            cells = [r[s][k]["f1"] for s in ("labels", "model") for k in ("no_denoising", "gate_none", "gate_agree")]
            print(f"| {lang} | {rnd} | " + " | ".join(f"{100 * v:.1f}" for v in cells) + " |")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
