"""Progress output, the OpenMP spin count set on import, and warnings that describe nothing real."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from glode import progress as progress_mod
from glode.progress import LogLines, progress


class _Pipe(io.StringIO):
    """A stream that is not a terminal, like DVC's capture of a stage's stderr."""

    def isatty(self) -> bool:
        return False


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_off_a_terminal(monkeypatch):
    monkeypatch.delenv(progress_mod.QUIET_ENV, raising=False)
    out = _Pipe()
    bar = progress(total=5, desc="knn search", unit="chunk", file=out)
    assert isinstance(bar, LogLines)
    for _ in range(5):
        bar.update(1)
        bar.set_postfix(loss="0.1")  # must not force a line per step
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("knn search:   0%") and "0/5" in lines[0]
    assert lines[-1].startswith("knn search: 100%") and "5/5" in lines[-1]
    assert len(lines) == 2  # the start and the end; nothing in between within LOG_INTERVAL


def test_log_lines_every_interval(monkeypatch):
    monkeypatch.delenv(progress_mod.QUIET_ENV, raising=False)
    out = _Pipe()
    bar = progress(total=4, desc="training", unit="step", file=out)
    clock = iter(range(int(bar.start_t) + 40, int(bar.start_t) + 10_000, 40))  # each reading 40 s on
    bar._time = lambda: next(clock)  # tqdm reads time through this attribute
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [ln.split("|")[0].split(":")[1].strip() for ln in lines] == ["0%", "25%", "50%", "75%", "100%"]


def test_terminal_gets_a_tqdm_bar(monkeypatch):
    monkeypatch.delenv(progress_mod.QUIET_ENV, raising=False)
    out = _Terminal()
    bar = progress(range(3), desc="scoring", file=out)
    assert not isinstance(bar, LogLines)
    list(bar)
    assert "\r" in out.getvalue()


@pytest.mark.parametrize("value, silent", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_quiet_environment(monkeypatch, value, silent):
    monkeypatch.setenv(progress_mod.QUIET_ENV, value)
    out = _Pipe()
    bar = progress(range(3), desc="x", file=out)
    assert list(bar) == [0, 1, 2]
    assert (out.getvalue() == "") == silent


def test_disabled_by_caller(monkeypatch):
    monkeypatch.delenv(progress_mod.QUIET_ENV, raising=False)
    out = _Pipe()
    bar = progress(total=2, desc="x", enabled=False, file=out)
    bar.update(2)
    bar.set_postfix(loss="1")
    bar.close()
    assert out.getvalue() == ""


def _openmp_env_after_import(env: dict) -> tuple[str | None, str | None]:
    code = "import glode, os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    return tuple(None if v == "None" else v for v in out)


def test_import_sets_a_short_openmp_spin_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    import glode

    assert _openmp_env_after_import(env) == (glode.SPIN_COUNT, None)
    assert _openmp_env_after_import(dict(env, OMP_WAIT_POLICY="ACTIVE")) == (None, "ACTIVE")
    assert _openmp_env_after_import(dict(env, GOMP_SPINCOUNT="300000")) == ("300000", None)


def test_stage_entry_points_import_glode_before_torch():
    """libgomp reads GOMP_SPINCOUNT once, when torch loads: every stage must import glode first."""
    from pathlib import Path

    stages = Path(__file__).resolve().parents[1] / "stages"
    for script in sorted(stages.glob("*.py")):
        imports = [ln for ln in script.read_text().splitlines() if ln.startswith(("import ", "from "))]
        heavy = [i for i, ln in enumerate(imports) if ln.split()[1].split(".")[0] in ("torch", "faiss", "transformers", "numpy")]
        first_glode = next((i for i, ln in enumerate(imports) if ln.split()[1].split(".")[0] == "glode"), None)
        assert first_glode is not None, script
        assert not heavy or first_glode < min(heavy), f"{script.name} imports a threaded library before glode"
