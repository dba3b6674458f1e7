"""Peak memory of the pseudo_label stage: two project revisions side by side on one input.

The stage holds every span feature of the target and source corpora (about 2 GB of float32
for 3000 CoNLL sentences each) before reducing them to PCA vectors. This script runs the
stage entry point of each revision (a ``git archive`` snapshot put first on PYTHONPATH) as
a child process on the same tables and model, alternating revisions on every repeat, and
records the child's wall time and peak RSS (``os.wait4``). It also checks that the revisions
wrote byte-identical outputs, so a memory change cannot hide a result change.

    python bench/pseudo_label_memory.py --project ../bench-work/de --revs 0777cea HEAD

``--project`` is a glode project folder whose ``tables/`` and ``models/r0`` are built (the
benchmark harness's work folders qualify). Results go to bench/results/pseudo_label_memory.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ["spans.parquet", "target_reps.npy", "source_reps.npy", "source_labels.npy"]


def snapshot(rev: str, dest: Path) -> str:
    """Extract revision ``rev`` of this repository into ``dest``; return its full hash."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return sha


def run_stage(code: Path, project: Path, out: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(code / "stages" / "pseudo_label.py"), "--round", "r1", "--prev", "r0",
           "--out", str(out), "--tables", str(project / "tables"), "--models", str(project / "models")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{code}: pseudo_label failed:\n{output[-3000:]}")
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def digest(folder: Path) -> dict:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in OUTPUTS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, required=True, help="glode project folder with tables/ and models/r0")
    ap.add_argument("--revs", nargs="+", default=["HEAD~1", "HEAD"], help="git revisions to compare")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch/BLAS threads of each child")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pseudo_label_memory.json")
    args = ap.parse_args(argv)
    project = args.project.resolve()
    runs: dict[str, list[dict]] = {}
    digests: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="glode-plmem-") as tmp:
        codes = {rev: Path(tmp) / f"code{i}" for i, rev in enumerate(args.revs)}
        shas = {rev: snapshot(rev, code) for rev, code in codes.items()}
        for r in range(args.repeats):
            for rev, code in codes.items():
                out = Path(tmp) / f"out-{r}-{shas[rev][:10]}"
                res = run_stage(code, project, out, args.threads)
                print(f"repeat {r} {rev} ({shas[rev][:10]}): {res['seconds']} s, peak RSS {res['peak_rss_mb']} MB", flush=True)
                runs.setdefault(rev, []).append(res)
                digests.setdefault(rev, digest(out))
    identical = len({json.dumps(d, sort_keys=True) for d in digests.values()}) == 1
    summary = {rev: {"commit": shas[rev], "median_seconds": statistics.median(x["seconds"] for x in rs),
                     "median_peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in rs), "runs": rs}
               for rev, rs in runs.items()}
    result = {"project": str(args.project), "threads": args.threads, "repeats": args.repeats,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "outputs_identical": identical, "revisions": summary,
              "command": "python bench/pseudo_label_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"outputs identical across revisions: {identical}; wrote {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
