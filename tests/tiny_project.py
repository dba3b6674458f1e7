"""A git+DVC copy of the project pointed at a tiny random encoder and tiny synthetic corpora: what
tests/test_pipeline.py runs `dvc repro` on, and what bench/pipeline_digest.py digests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from glode.presets import apply_preset
from glode.rounds import rewrite_rounds
from tests.params_fixture import default_params, default_params_text
from tests.synthetic import all_words, write_corpus
from tests.tiny_encoder import build_tiny_encoder

PROJECT_FILES = ["dvc.yaml", "stages", "glode", ".dvc/config", ".dvc/plots"]  # params.yaml: generated


def build_tiny_project(code: Path, root: Path, threads: int, pythonpath: bool = False) -> dict:
    """Copy ``code``'s project files into ``root``, write the corpora, the tiny encoder and a
    two-round params.yaml with the views on, commit it; returns the environment to run DVC in
    (``threads`` OpenMP/MKL threads; ``pythonpath``: the copy's glode first on the path, for a
    checkout other than the installed one)."""
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
    params = default_params()  # the schema defaults, not the working tree's params.yaml (issue 39)
    params_text = default_params_text()
    # Point the copy at the tiny encoder and make training short; keep the file's structure.
    params_text = params_text.replace("name: embedded", f"name: {encoder_dir}")
    # three epochs of one batch of all 48 source sentences (1,300 spans x 32 units): a span gradient
    # big enough for torch's multi-threaded path, whose atomic adds made reruns differ before issue 40
    params_text = params_text.replace(f"epochs: {params['train']['epochs']}", "epochs: 3")
    params_text = params_text.replace(f"batch-size: {params['train']['batch-size']}", "batch-size: 48", 1)
    params_text = params_text.replace("\nk: 300\n", "\nk: 5\n").replace("dim: 128", "dim: 16")
    (root / "params.yaml").write_text(params_text)
    rewrite_rounds(root / "params.yaml", 2)  # two rounds (the default is one): the chain must carry across rounds
    # the views on (the default): the stages must carry k, the prototypes and the kNN search
    # through DVC; plain is the same stages with both views' evidence zero
    apply_preset(root / "params.yaml", "glode")
    assert yaml.safe_load((root / "params.yaml").read_text())["denoise"]["use-local"] is True
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if pythonpath:
        env["PYTHONPATH"] = str(root)
    env.update(DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return env
