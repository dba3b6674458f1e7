"""Issue 20: a usage error of any stage or of `glode` is one line and click's exit status 2, never a
traceback (typer 0.29 raises its vendored click's exceptions, which plain click's handler missed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    # entry point: (arguments, text expected in the one line)
    "stages/check.py": (["--bogus"], "No such option: --bogus"),
    "stages/prepare.py": (["--bogus"], "No such option: --bogus"),
    "stages/encoder.py": (["--name"], "Option '--name' requires an argument"),
    "stages/train_source.py": (["--tables", "t", "--max-span-len", "x"], "Invalid value for '--max-span-len'"),
    "stages/train_target.py": (["--round", "r1", "--init", "fresh"], "Invalid value for '--init'"),
    "stages/initial_labels.py": (["--batch-size", "many"], "Invalid value for '--batch-size'"),
    "stages/pseudo_label.py": (["--round", "r1"], "Missing option '--prev'"),
    "stages/denoise.py": (["--k", "abc", "--round", "r1", "--pseudo", "p", "--prev-labels", "l", "--out", "o",
                           "--metrics", "m"], "Invalid value for '--k'"),
    "stages/evaluate.py": (["--model"], "Option '--model' requires an argument"),
    "stages/report.py": (["extra"], "unexpected extra argument"),
    "glode": (["rounds", "abc"], "Invalid value for 'n'"),
}


def test_every_entry_point_reports_a_usage_error_in_one_line_with_status_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {}
    for name, (args, _) in CASES.items():  # started together: most of the time is imports
        cmd = [sys.executable, "-m", "glode.cli"] if name == "glode" else [sys.executable, str(ROOT / name)]
        procs[name] = subprocess.Popen([*cmd, *args], cwd=tmp_path, env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        text = CASES[name][1]
        assert proc.returncode == 2, (name, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and text in err, (name, err)
        assert "--help" in err and "Traceback" not in err and out == "", (name, err)
    assert not any(tmp_path.iterdir()), "a usage error wrote something"


def test_glode_version_prints_the_projects_version_and_exits_0(tmp_path):
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = subprocess.run([sys.executable, "-m", "glode.cli", "--version"], cwd=tmp_path, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"glode {version}\n", "")


GLODE_RANGES = {
    # issue 39: out-of-range values used to be accepted, or `-1` read as an unknown option
    "rounds -1": (["rounds", "-1"], "Invalid value for 'n': Input should be greater than or equal to 0"),
    "rounds 21": (["rounds", "21"], "Invalid value for 'n': Input should be less than or equal to 20"),
    "min-prob 2": (["labels", "show", "r1", "--min-prob", "2"], "Invalid value for '--min-prob'"),
    "max-prob -0.1": (["labels", "show", "r1", "--max-prob", "-0.1"], "Invalid value for '--max-prob'"),
    "limit -5": (["labels", "show", "r1", "--limit", "-5"], "Invalid value for '--limit'"),
    "window -1": (["labels", "diff", "r0", "r1", "--window", "-1"], "Invalid value for '--window'"),
    "sentence -3": (["labels", "show", "r1", "-s", "-3"], "Invalid value for '--sentence'"),
    "batch-size 0": (["predict", "in.txt", "--model", "m", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    "threads -2": (["predict", "in.txt", "--model", "m", "--threads", "-2"], "Invalid value for '--threads'"),
}


def test_glode_options_are_range_checked_as_usage_errors(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {name: subprocess.Popen([sys.executable, "-m", "glode.cli", *args], cwd=tmp_path, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, (args, _) in GLODE_RANGES.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and GLODE_RANGES[name][1] in err, (name, err)
        assert "Traceback" not in err and out == "", (name, err)
    assert not any(tmp_path.iterdir()), "a usage error wrote something"
