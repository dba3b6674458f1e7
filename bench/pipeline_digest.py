"""Digest of the tiny-encoder pipeline's outputs, to show that a refactor changes no byte (issue 37).

Builds the pipeline test's project (tests/test_pipeline.py: tiny random encoder, synthetic
corpora, two rounds, the views on) from the code of ``--code`` (a checkout: the working tree by
default, or e.g. ``git worktree add /tmp/before <commit>``), runs ``dvc repro`` single-threaded,
and writes the SHA-256 of every metric, label table, report and log file, and of every model
folder's weights, to ``--out``. Compare two digests with ``--compare``::

    git worktree add /tmp/before f1dc9de
    python bench/pipeline_digest.py --code /tmp/before --out /tmp/before.json
    python bench/pipeline_digest.py --out /tmp/after.json --compare /tmp/before.json

The synthetic data and the tiny encoder come from this checkout's tests/ helpers, so both runs
see the same inputs; only the project code (glode/, stages/, dvc.yaml) differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROJECT_FILES = ["dvc.yaml", "stages", "glode", ".dvc/config", ".dvc/plots"]
COMPARED = ("metrics", "reports", "logs")


def build_project(code: Path, root: Path) -> dict:
    """The pipeline test's project in ``root`` with ``code``'s glode/stages/dvc.yaml; its environment."""
    from glode.presets import apply_preset
    from glode.rounds import rewrite_rounds
    from tests.params_fixture import default_params, default_params_text
    from tests.synthetic import all_words, write_corpus
    from tests.tiny_encoder import build_tiny_encoder

    for name in PROJECT_FILES:
        src = code / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    write_corpus(root / "data/en/train.txt", 48, seed=1)
    write_corpus(root / "data/en/dev.txt", 12, seed=2)
    write_corpus(root / "data/de/train.txt", 24, seed=3)
    write_corpus(root / "data/de/test.txt", 16, seed=4)
    encoder_dir = build_tiny_encoder(root / "tiny-encoder", words=all_words())
    params = default_params()
    text = default_params_text()
    text = text.replace("name: embedded", f"name: {encoder_dir}")
    text = text.replace(f"epochs: {params['train']['epochs']}", "epochs: 3")
    text = text.replace(f"batch-size: {params['train']['batch-size']}", "batch-size: 48", 1)
    text = text.replace("\nk: 300\n", "\nk: 5\n").replace("dim: 128", "dim: 16")
    (root / "params.yaml").write_text(text)
    rewrite_rounds(root / "params.yaml", 2)
    apply_preset(root / "params.yaml", "glode")
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(root), DVC_NO_ANALYTICS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return env


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
        env = build_project(args.code.resolve(), root)
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
