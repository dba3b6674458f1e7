"""Digest of the tiny-encoder pipeline's outputs, to show that a refactor changes no byte (issue 37).

Builds the pipeline test's project (tests/tiny_project.py: tiny random encoder, synthetic
corpora, two rounds, the views on) from the code of ``--code`` (a checkout: the working tree by
default, or e.g. ``git worktree add /tmp/before <commit>``), runs ``dvc repro`` single-threaded,
and writes the SHA-256 of every metric, label table, report and log file, and of every model
folder's weights, to ``--out``. Compare two digests with ``--compare``::

    git worktree add /tmp/before f1dc9de
    python bench/pipeline_digest.py --code /tmp/before --out /tmp/before.json
    python bench/pipeline_digest.py --out /tmp/after.json --compare /tmp/before.json

The synthetic data, the tiny encoder and the params.yaml (the schema's defaults) come from this
checkout's tests/ helpers and glode, so both runs see the same inputs; only the project code
(glode/, stages/, dvc.yaml) differs. Take the earlier digest before a change adds params keys: an
older checkout's check stage refuses keys it does not know. Issue 37's refactor was checked
against the digest of commit f1dc9de taken this way (46 files, byte-identical after it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMPARED = ("metrics", "reports", "logs")


def digest(root: Path) -> dict[str, str]:
    """SHA-256 of the outputs a user compares (labels, metrics, reports, logs) and of the weights."""
    files = sorted(root.glob("rounds/*/labels.parquet"))
    for folder in COMPARED:
        files += sorted(p for p in (root / folder).rglob("*") if p.is_file() and p.name != ".gitignore")
    files += sorted(root.glob("models/*/*.safetensors"))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose glode/, stages/, dvc.yaml run (default: this one)")
    ap.add_argument("--out", type=Path, required=True, help="digest JSON to write")
    ap.add_argument("--compare", type=Path, help="an earlier digest: list every file that differs, exit 1 if any")
    ap.add_argument("--keep", type=Path, help="build the project here and keep it (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "project"
        root.mkdir(parents=True)
        from tests.tiny_project import build_tiny_project

        env = build_tiny_project(args.code.resolve(), root, threads=1, pythonpath=True)
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        sums = digest(root)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.code, capture_output=True, text=True).stdout.strip()
    args.out.write_text(json.dumps({"code": str(args.code), "commit": commit, "files": sums}, indent=2) + "\n")
    print(f"{len(sums)} files digested -> {args.out}")
    if args.compare:
        before = json.loads(args.compare.read_text())["files"]
        differ = sorted(k for k in set(before) | set(sums) if before.get(k) != sums.get(k))
        for name in differ:
            print(f"differs: {name}")
        print("byte-identical" if not differ else f"{len(differ)} of {len(sums)} files differ")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
