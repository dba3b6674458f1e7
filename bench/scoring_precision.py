"""Test F1 of trained models scored in each precision (`evaluate.precision`: fp32, bf16, int8),
side by side in one process (issue 38, item 4: "measured before adopted").

    python bench/scoring_precision.py --projects ../bench-work/x4/de-s0 ../bench-work/x4/ar-s0 \\
        --threads 1 --out bench/results/scoring_precision.json

Each project is a work folder of bench/results.py (read only): `encoder/`, `tables/target_test.parquet`,
`params.yaml`, `models/rN`. Every model found there is scored on the test table by the evaluate
stage's own path (`glode.steps.evaluate.evaluate_model`, the model placed by
`glode.device.scoring_device`: int8 quantises the encoder's linear layers, bf16 runs under
autocast), once per precision, the precisions' order rotated from model to model; the metrics
go to a temporary folder. Recorded per model and precision: seqeval strict F1, P, R, predicted
entities, CPU and wall seconds (loading, encoding and scoring: the speed measure is
bench/predict_bench.py), and the F1 the run itself recorded in `metrics/rN.json` (fp32 must
reproduce it). A project or model that does not exist yet is listed under `pending` with the
command that measures it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from benchkit import cpu_flags  # noqa: E402  (a sibling script)
sys.path.insert(0, str(ROOT))
PRECISIONS = ("fp32", "bf16", "int8")


def project_key(project: Path) -> tuple[str, int | None]:
    """(target, seed) of a work folder: from its params.yaml, else from a name like ``de-s0``."""
    params = project / "params.yaml"
    if params.is_file():
        import yaml

        p = yaml.safe_load(params.read_text(encoding="utf-8"))
        return str(p["target"]), int(p["train"]["seed"])
    m = re.fullmatch(r"(.+)-s(\d+)", project.name)
    return (m.group(1), int(m.group(2))) if m else (project.name, None)


def score(model_dir: Path, project: Path, precision: str, batch_size: int, tmp: Path) -> dict:
    """The evaluate stage on the project's test table in one precision: its metrics and times."""
    from glode.device import scoring_device
    from glode.settings import DeviceSettings, EvaluateSettings
    from glode.steps.evaluate import evaluate_model

    device = scoring_device(DeviceSettings(device="cpu"), precision)
    t0, c0 = time.perf_counter(), time.process_time()
    s = evaluate_model(model_dir, project / "tables/target_test.parquet", tmp / f"{precision}.json",
                       EvaluateSettings(batch_size=batch_size, precision=precision), encoder_dir=project / "encoder",
                       progress=False, device=device)
    return {"f1": s["f1"], "precision": s["precision"], "recall": s["recall"], "pred_entities": s["pred_entities"],
            "gold_entities": s["gold_entities"], "sentences": s["sentences"],
            "wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2)}



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=Path, nargs="+", required=True, help="work folders (read only)")
    ap.add_argument("--rounds", nargs="+", default=["r0", "r1"], help="models/<round> to score where present")
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/scoring_precision.json")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    args = ap.parse_args(argv)

    import torch
    from transformers.utils import logging as hf_logging

    from glode.atomic import atomic_path

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    command = "python bench/scoring_precision.py " + " ".join(sys.argv[1:] if argv is None else argv)
    cells, pending = [], []
    turn = 0
    for project in args.projects:
        target, seed = project_key(project)
        for rnd in args.rounds:
            model_dir = project / "models" / rnd
            if not (model_dir / "glode_model.json").is_file():
                pending.append({"project": str(project), "target": target, "seed": seed, "round": rnd,
                                "command": f"python bench/scoring_precision.py --projects {project} --rounds {rnd} "
                                           f"--threads {args.threads}"})
                continue
            order = args.precisions[turn % len(args.precisions):] + args.precisions[: turn % len(args.precisions)]
            turn += 1
            got = {}
            with tempfile.TemporaryDirectory() as tmp:
                for precision in order:
                    got[precision] = score(model_dir, project, precision, args.batch_size, Path(tmp))
                    print(f"{target} s{seed} {rnd} {precision}: F1 {100 * got[precision]['f1']:.2f} "
                          f"({got[precision]['cpu_s']} s CPU)", file=sys.stderr, flush=True)
            recorded = project / "metrics" / f"{rnd}.json"
            cell = {"project": str(project), "target": target, "seed": seed, "round": rnd, "order": order,
                    "recorded_f1": json.loads(recorded.read_text())["f1"] if recorded.is_file() else None,
                    "scores": {p: got[p] for p in args.precisions}}
            if "fp32" in got:
                cell["f1_minus_fp32_points"] = {p: round(100 * (got[p]["f1"] - got["fp32"]["f1"]), 2)
                                                for p in args.precisions if p != "fp32"}
                cell["cpu_over_fp32"] = {p: round(got[p]["cpu_s"] / got["fp32"]["cpu_s"], 3)
                                         for p in args.precisions if p != "fp32"}
            cells.append(cell)
    summary = {}
    for p in args.precisions:
        deltas = [c["f1_minus_fp32_points"][p] for c in cells if p in c.get("f1_minus_fp32_points", {})]
        if deltas:
            summary[p] = {"cells": len(deltas), "mean_f1_minus_fp32_points": round(statistics.mean(deltas), 2),
                          "min": min(deltas), "max": max(deltas)}
    result = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "cpu_flags": cpu_flags(),
                    "threads": args.threads, "torch": torch.__version__,
                    "quantized_engine": torch.backends.quantized.engine},
        "note": args.note,
        "batch_size": args.batch_size,
        "cells": cells,
        "summary": summary,
        "pending": pending,
    }
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for c in cells:
        recorded = "" if c["recorded_f1"] is None else f" (recorded {100 * c['recorded_f1']:.2f})"
        print(f"{c['target']} s{c['seed']} {c['round']}: "
              + ", ".join(f"{p} {100 * c['scores'][p]['f1']:.2f}" for p in args.precisions) + recorded)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
