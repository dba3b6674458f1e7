"""Kill a stage mid-write: `hang_hook/sitecustomize.py` (put on PYTHONPATH) makes the process
named in ``GLODE_TEST_HANG`` write its pid to a marker file and wait just before it renames the
named output into place; the test waits for the marker and sends a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

HOOK = Path(__file__).parent / "hang_hook"


def hang_env(env: dict, spec: str, marker: Path) -> dict:
    """``env`` with the hook active for ``spec`` ("SCRIPT:OUTPUT"); the pid goes to ``marker``.
    The hook goes in front of the caller's PYTHONPATH, which stays (it may name the checkout to test)."""
    path = os.pathsep.join(p for p in (str(HOOK), env.get("PYTHONPATH", "")) if p)
    return dict(env, PYTHONPATH=path, GLODE_TEST_HANG=f"{spec}:{marker}")


def wait_for_hang(proc: subprocess.Popen, marker: Path, timeout: float, what: str, poll: float = 0.1) -> int:
    """Wait until the hooked process has reached its write; returns its pid."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{what} never reached its write"
        time.sleep(poll)
    return int(marker.read_text())


def sigint_default() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: a shell's background job
    (``cmd &``, e.g. a test run started so) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, as a program in the background should not; the test's child is to
    behave as one in the foreground."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
