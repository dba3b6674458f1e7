"""glode/progress.py: progress of long loops, a tqdm bar on a terminal and timed log lines
otherwise, silenced by the environment or the caller."""

from __future__ import annotations

import io

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
def test_glode_quiet_environment_silences_progress_for_true_values(monkeypatch, value, silent):
    monkeypatch.setenv(progress_mod.QUIET_ENV, value)
    out = _Pipe()
    bar = progress(range(3), desc="x", file=out)
    assert list(bar) == [0, 1, 2]
    assert (out.getvalue() == "") == silent


def test_progress_disabled_by_the_caller_writes_nothing(monkeypatch):
    monkeypatch.delenv(progress_mod.QUIET_ENV, raising=False)
    out = _Pipe()
    bar = progress(total=2, desc="x", enabled=False, file=out)
    bar.update(2)
    bar.set_postfix(loss="1")
    bar.close()
    assert out.getvalue() == ""
