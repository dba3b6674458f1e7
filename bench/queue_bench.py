"""Two queued DVC experiments run with `dvc queue start -j 2` against the same two run one
after the other (`-j 1`), in one invocation.

    python bench/queue_bench.py --out bench/results/queue.json

The bench clones the committed project into a temporary folder, shrinks the run with `-S`
options (`--source-sentences`, `--target-sentences`, 1 epoch, 1 round) so that an experiment
takes a couple of minutes, and queues two experiments that share nothing (different
`train.seed`, so DVC's run cache cannot serve one from the other). It times `-j 1` with seeds
(1, 2) and `-j 2` with seeds (3, 4), `--repeats` times, alternating which mode goes first.
Issue goal: `-j 2` no slower than `-j 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import emit  # a sibling script

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run_queue(project: Path, env: dict, jobs: int, seeds: list[int], sets: list[str]) -> float:
    for seed in seeds:
        sh([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-n", f"j{jobs}-s{seed}",
            "-S", f"train.seed={seed}", *sum((["-S", s] for s in sets), [])], project, env)
    t = time.perf_counter()
    sh([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], project, env)
    while True:
        status = sh([sys.executable, "-m", "dvc", "queue", "status"], project, env)
        rows = [ln for ln in status.splitlines()[1:] if ln.strip()]
        if not any(("Queued" in r or "Running" in r) for r in rows):
            break
        time.sleep(2)
    elapsed = time.perf_counter() - t
    failed = [r for r in rows if "Failed" in r]
    if failed:
        logs = "\n".join(sh([sys.executable, "-m", "dvc", "queue", "logs", r.split()[0]], project, env)[-3000:]
                         for r in failed)
        raise SystemExit(f"queued experiments failed:\n{status}\n{logs}")
    sh([sys.executable, "-m", "dvc", "queue", "stop"], project, env)  # the workers exit when idle anyway
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source-sentences", type=int, default=400)
    ap.add_argument("--target-sentences", type=int, default=300)
    ap.add_argument("--k", type=int, default=50, help="neighbours (the small bank cannot serve the default 300)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the temporary project")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    env = dict(os.environ, DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GLODE_QUIET="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    tmp = Path(tempfile.mkdtemp(prefix="glode-queue-"))
    project = tmp / "project"
    sh(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(project)], tmp, env)
    sh(["glode", "rounds", "1"], project, env)
    sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "--allow-empty", "-am", "one round"], project, env)
    sets = [f"data.max-source-sentences={args.source_sentences}",
            f"data.max-target-sentences={args.target_sentences}", "train.epochs=1", f"k={args.k}"]
    # prepare and encoder are shared by every experiment: run them once so neither mode pays for them
    sh([sys.executable, "-m", "dvc", "repro", "prepare", "encoder"], project, env)
    runs = []
    seed = 1
    for r in range(args.repeats):
        for jobs in ((1, 2) if r % 2 == 0 else (2, 1)):
            seeds = [seed, seed + 1]
            seed += 2
            wall = run_queue(project, env, jobs, seeds, sets)
            runs.append({"jobs": jobs, "seeds": seeds, "wall_s": round(wall, 1)})
            print(json.dumps(runs[-1]), flush=True)
    med = {j: sorted(x["wall_s"] for x in runs if x["jobs"] == j)[len([x for x in runs if x["jobs"] == j]) // 2]
           for j in (1, 2)}
    result = {"command": "python bench/queue_bench.py " + " ".join(sys.argv[1:]),
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
              "settings": sets + ["rounds: 1"], "runs": runs,
              "median_wall_s": {f"j{j}": v for j, v in med.items()},
              "j2_over_j1": round(med[2] / med[1], 2)}
    emit(result, args.out)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
