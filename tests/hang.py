"""Kill a stage mid-write: `hang_hook/sitecustomize.py` (put on PYTHONPATH) makes the process
named in ``GLODE_TEST_HANG`` write its pid to a marker file and wait just before it renames the
named output into place; the test waits for the marker and sends a signal."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

HOOK = Path(__file__).parent / "hang_hook"


def hang_env(env: dict, spec: str, marker: Path) -> dict:
    """``env`` with the hook active for ``spec`` ("SCRIPT:OUTPUT"); the pid goes to ``marker``."""
    path = os.pathsep.join(p for p in (str(HOOK), env.get("PYTHONPATH", "")) if p)  # keep a checkout's own path
    return dict(env, PYTHONPATH=path, GLODE_TEST_HANG=f"{spec}:{marker}")


def wait_for_hang(proc: subprocess.Popen, marker: Path, timeout: float, what: str, poll: float = 0.1) -> int:
    """Wait until the hooked process has reached its write; returns its pid."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{what} never reached its write"
        time.sleep(poll)
    return int(marker.read_text())
