"""Whole-pipeline smoke test: `dvc repro` on a copy of the project, tiny encoder and data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hang import hang_env, wait_for_hang
from tests.tiny_project import build_tiny_project

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """A git+DVC copy of the project pointed at a tiny random encoder and tiny data, run with two
    threads whatever the machine (reruns must be byte-identical with several, issue 40)."""
    root = tmp_path_factory.mktemp("project")
    return root, build_tiny_project(ROOT, root, threads=2)


def test_repro_round0_writes_wellformed_metrics(project):
    root, env = project
    run([sys.executable, "-m", "dvc", "repro", "evaluate@r0"], root, env)
    assert not (root / "models/r1").exists(), "evaluate@r0 must not run the self-training rounds"
    metrics = json.loads((root / "metrics/r0.json").read_text())
    for key in ("precision", "recall", "f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert set(metrics["per_type"]) <= {"PER", "ORG", "LOC"}
    assert 0.0 <= metrics["span"]["f1"] <= 1.0
    assert metrics["gold_entities"] > 0
    meta = json.loads((root / "models/r0/glode_model.json").read_text())
    assert meta["classes"] == ["O", "PER", "ORG", "LOC"]
    # A second repro right after is a no-op.
    out = run([sys.executable, "-m", "dvc", "repro", "evaluate@r0"], root, env).stdout
    assert "didn't change" in out or "is cached" in out or "up to date" in out.lower()


def test_repro_two_rounds_writes_labels_and_metrics(project):
    import pandas as pd

    root, env = project
    run([sys.executable, "-m", "dvc", "repro"], root, env)
    for r in ("r1", "r2"):
        metrics = json.loads((root / f"metrics/{r}.json").read_text())
        assert 0.0 <= metrics["f1"] <= 1.0
        stats = json.loads((root / f"metrics/denoise/{r}.json").read_text())
        assert stats["k"] == 5 and "pseudo_label" in stats
        labels = pd.read_parquet(root / f"rounds/{r}/labels.parquet")
        assert {"sentence_id", "start", "end", "text", "label", "prob", "O", "PER", "ORG", "LOC",
                "prev_label", "global_admitted", "local_admitted", "changed", "gold"} <= set(labels.columns)
        assert (labels["round"] == r).all()
        probs = labels[["O", "PER", "ORG", "LOC"]].to_numpy()
        assert abs(probs.sum(axis=1) - 1).max() < 1e-4
    rows = json.loads((root / "reports/rounds.json").read_text())
    assert [r["round"] for r in rows] == ["r0", "r1", "r2"]
    assert all(r["test_f1"] is not None and r["pseudo_label_f1"] is not None for r in rows)
    check_declared_metrics(root, env)
    plots = run([sys.executable, "-m", "dvc", "plots", "show", "--json"], root, env).stdout
    for title in ("Test F1 by round", "Pseudo-label P/R/F1 by round", "Label flips by round",
                  "Pseudo labels against gold, last round"):
        assert title in plots
    confusion = json.loads((root / "reports/confusion.json").read_text())
    assert confusion and {d["round"] for d in confusion} == {"r2"}
    assert all(d["actual"] != "O" or d["predicted"] != "O" for d in confusion)
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", "plots-html"], root, env)
    page = (root / "plots-html/index.html").read_text(encoding="utf-8")
    # the report stage's template (.dvc/config) carries the JavaScript: no CDN (drawn: tests/test_plots.py)
    assert "window.vegaEmbed=" in page and "cdn.jsdelivr" not in page
    assert [d["round"] for d in json.loads((root / "reports/flips.json").read_text())] == ["r1", "r2"]
    assert {p.name for p in (root / "reports/figures").iterdir()} == {
        f"{stem}.{ext}" for stem in ("test_f1", "pseudo_labels", "flips", "confusion") for ext in ("png", "svg")}


def leaves(d: dict) -> list:
    return [v for x in d.values() for v in (leaves(x) if isinstance(x, dict) else [x])]


def check_declared_metrics(root: Path, env: dict) -> None:
    """Issue 41: DVC's metrics are one small file that leads with the last round's test F1; the
    training logs, denoising statistics and per-type scores are files, not DVC metrics."""
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], root, env).stdout)
    files = next(iter(shown.values()))["data"]
    assert list(files) == ["reports/metrics.json"], list(files)
    data = files["reports/metrics.json"]["data"]
    assert len(leaves(data)) <= 20, data  # two rounds here: 19 values; the default's one round: 13
    last = json.loads((root / "metrics/r2.json").read_text())
    assert list(data)[:2] == ["f1", "precision"] and data["round"] == "r2"
    assert (data["f1"], data["span_f1"]) == (last["f1"], last["span"]["f1"])
    assert data["r0"]["f1"] == json.loads((root / "metrics/r0.json").read_text())["f1"]
    # `dvc metrics show`'s table sorts its columns by name: the headline comes first there too
    table = run([sys.executable, "-m", "dvc", "metrics", "show", "--md"], root, env).stdout
    assert [c.strip() for c in table.splitlines()[0].split("|")[1:4]] == ["Path", "f1", "precision"], table


def outputs_snapshot(root: Path) -> dict[str, bytes]:
    """dvc.lock (hashes of every output, models included) and the files a user compares."""
    files = [root / "dvc.lock", *sorted(root.glob("rounds/*/labels.parquet"))]
    for folder in ("metrics", "logs", "reports"):
        files += sorted(p for p in (root / folder).rglob("*") if p.is_file() and p.name != ".gitignore")
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_killed_stage_recovers_and_reruns_are_byte_identical(project):
    """Issue 6: `dvc repro` right after a full run is a no-op; a stage killed while writing
    leaves no output that looks complete and `dvc repro` then completes; a forced rerun of the
    whole pipeline (same params and seed, same machine) gives byte-identical outputs."""
    import signal

    root, env = project
    run([sys.executable, "-m", "dvc", "repro"], root, env)  # a full run (already done by the test above)
    ran, _ = stage_lines(run([sys.executable, "-m", "dvc", "repro"], root, env).stdout)
    assert not ran, f"dvc repro right after a full run ran {ran}"
    before = outputs_snapshot(root)
    assert "seconds" not in before["metrics/denoise/r1.json"].decode() and "seconds" not in before["logs/r0/metrics.json"].decode()

    # kill denoise@r1 just before it renames its finished labels.parquet into place
    marker = root / "hang.pid"
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-f", "-s", "denoise@r1"], cwd=root,
                            env=hang_env(env, "stages/denoise.py:labels.parquet", marker),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        os.kill(wait_for_hang(proc, marker, 600, "denoise@r1"), signal.SIGKILL)
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    marker.unlink()
    assert proc.returncode != 0
    labels = root / "rounds/r1/labels.parquet"
    assert not labels.exists() or labels.read_bytes() == before["rounds/r1/labels.parquet"]  # intact or absent
    assert list(labels.parent.glob(".labels.parquet.tmp-*")), "the killed writer's hidden temporary file"

    out = run([sys.executable, "-m", "dvc", "repro"], root, env).stdout  # completes (restores or reruns the stage)
    ran, skipped = stage_lines(out)
    assert "denoise@r1" in ran | skipped and ran <= {"denoise@r1", "report"}, out  # nothing else reruns
    for name in ("rounds/r1/labels.parquet", "metrics/denoise/r1.json", "metrics/r2.json", "reports/rounds.json"):
        assert (root / name).read_bytes() == before[name], name

    # every stage again, from scratch: byte-identical labels, identical metrics and logs, same hashes
    ran, _ = stage_lines(run([sys.executable, "-m", "dvc", "repro", "-f"], root, env).stdout)
    assert {"prepare", "train_source", "denoise@r2", "train_target@r2", "evaluate@r2"} <= ran
    after = outputs_snapshot(root)
    assert not list(labels.parent.glob(".labels.parquet.*")), "the next write removes the dead writer's leftovers"
    assert sorted(after) == sorted(before)
    for name in before:
        assert after[name] == before[name], f"{name} differs between two runs"


def stage_lines(output: str) -> tuple[set[str], set[str]]:
    """Stages DVC ran and stages it skipped, read from its own output."""
    import re

    ran = set(re.findall(r"Running stage '([^']+)'", output))
    skipped = set(re.findall(r"Stage '([^']+)' didn't change, skipping", output))
    skipped |= set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))
    return ran, skipped


def test_experiments_rerun_only_what_changed(project):
    root, env = project
    run([sys.executable, "-m", "dvc", "repro"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "full run"], root, env)
    out = run([sys.executable, "-m", "dvc", "exp", "run", "-n", "k3", "-S", "k=3"], root, env).stdout
    ran, skipped = stage_lines(out)
    assert {"denoise@r1", "denoise@r2"} <= ran, out
    assert {"prepare", "encoder", "train_source", "initial_labels", "pseudo_label@r1", "evaluate@r0"} <= skipped, out
    assert not ran & {"prepare", "encoder", "train_source", "initial_labels", "pseudo_label@r1"}
    assert json.loads((root / "metrics/denoise/r1.json").read_text())["k"] == 3
    # the experiment table leads with the last round's test F1 (issue 41), then k's effect
    header = [c.strip() for c in run([sys.executable, "-m", "dvc", "exp", "show", "--md"], root, env).stdout.splitlines()[0].split("|")[1:-1]]
    assert header[:4] == ["Experiment", "Created", "f1", "precision"], header
    assert header.index("k") < header.index("target") and header.index("r1.f1") < header.index("k")
    check_labels_commands(root)

    out = run([sys.executable, "-m", "dvc", "exp", "run", "-S", "+rounds.r3={prev:r2}"], root, env).stdout
    ran, skipped = stage_lines(out)
    assert {"pseudo_label@r3", "denoise@r3", "train_target@r3", "evaluate@r3"} <= ran, out
    assert not {s for s in ran if s.endswith(("@r0", "@r1", "@r2"))}, out
    assert json.loads((root / "metrics/r3.json").read_text())["round"] == "r3"


def check_labels_commands(root: Path) -> None:
    """`glode labels` reads the committed run and the k=3 experiment through dvc.api."""
    from typer.testing import CliRunner

    from glode.cli import app

    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "--repo", str(root)])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    assert "label rows of r2 match" in cli("labels", "show", "r2", "--rev", "k3", "--include-o", "--limit", "3")
    assert "change their hard label from r1@HEAD to r1@k3" in cli(
        "labels", "diff", "r1", "r1", "--rev", "HEAD", "--rev-b", "k3", "--summary")
    conll = cli("labels", "export", "r2", "--rev", "k3")
    assert len([b for b in conll.split("\n\n") if b.strip()]) == 24  # every target sentence of the tiny corpus
