"""glode/__init__.py: importing glode sets a short OpenMP spin (GOMP_SPINCOUNT) before torch or
faiss load, unless the user chose a wait policy or spin count."""

from __future__ import annotations

import os
import subprocess
import sys


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
