"""Time the README's main job: `dvc repro` of a fresh clone, stage by stage, and its test F1.

    python bench/default_run.py                          # clone HEAD into a temp folder, run, record
    python bench/default_run.py -S train.epochs=2 -S train.mlm-batch-size=4 --label candidate
    python bench/default_run.py --keep /tmp/run1         # keep the clone (its outputs, dvc.lock)

Each `-S key=value` edits the clone's params.yaml before the run (values parsed as YAML), so a
candidate default is timed exactly as a user would run it. Stage times come from time-stamping
every line of DVC's output (a stage runs from its "Running stage" line to the next one). The run
is recorded in `bench/results/default_run.json` under its label (appended: runs are never
overwritten), with the machine, the 1-minute load average before and after (2 cores: above about
1 the machine was not idle), the commit, per-stage seconds and each model's test F1. Run it
on an otherwise idle machine; it takes 15 to 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "default_run.json"


def set_param(params: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = params
    for key in path:
        node = node[key]
    if last not in node:
        raise SystemExit(f"-S {dotted}: no such key in params.yaml")
    node[last] = value


def edit_params(clone: Path, sets: list[str]) -> dict:
    """Apply -S edits through glode's own text editor of params.yaml (comments kept)."""
    if not sets:
        return {}
    sys.path.insert(0, str(clone))
    from glode.presets import set_value  # the same line editor `glode preset` uses

    path = clone / "params.yaml"
    lines = path.read_text().splitlines(keepends=True)
    edits = {}
    for item in sets:
        key, _, raw = item.partition("=")
        value = yaml.safe_load(raw)
        set_value(lines, key, value)
        edits[key] = value
    path.write_text("".join(lines))
    parsed = yaml.safe_load(path.read_text())
    for key, value in edits.items():
        node = parsed
        for part in key.split("."):
            node = node[part]
        if node != value:
            raise SystemExit(f"-S {key}: could not be set")
    return edits


def timed_repro(clone: Path, env: dict) -> tuple[dict[str, float], float, int]:
    t0 = time.time()
    proc = subprocess.Popen(["dvc", "repro"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    marks: list[tuple[str, float]] = []
    for line in proc.stdout:
        m = re.match(r"Running stage '([^']+)'", line)
        if m:
            marks.append((m.group(1), time.time()))
        sys.stdout.write(line)
    rc = proc.wait()
    end = time.time()
    stages = {name: round((marks[i + 1][1] if i + 1 < len(marks) else end) - t, 1) for i, (name, t) in enumerate(marks)}
    return stages, round(end - t0, 1), rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-S", dest="sets", action="append", default=[], help="KEY=VALUE params.yaml edit (repeat)")
    ap.add_argument("--label", default="default", help="name of this run in the results file")
    ap.add_argument("--rev", default="HEAD", help="commit to clone (default HEAD)")
    ap.add_argument("--keep", type=Path, help="clone here and keep it (default: a temporary folder, removed)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", args.rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    base = args.keep or Path(tempfile.mkdtemp(prefix="glode-default-run-"))
    clone = base if args.keep else base / "glode"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
    edits = edit_params(clone, args.sets)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(clone), DVC_NO_ANALYTICS="1", GLODE_QUIET="1")
    load_before = os.getloadavg()[0]
    stages, total, rc = timed_repro(clone, env)
    f1 = {}
    for path in sorted((clone / "metrics").glob("r*.json")):
        f1[path.stem] = json.loads(path.read_text()).get("f1")
    record = {"label": args.label, "commit": commit, "edits": edits, "rc": rc, "total_s": total, "stages_s": stages,
              "test_f1": f1, "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
              "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python bench/default_run.py " + " ".join(f"-S {s}" for s in args.sets) + f" --label {args.label}"}
    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    runs.append(record)
    args.out.write_text(json.dumps(runs, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("label", "rc", "total_s", "test_f1", "load_before", "load_after")}))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
