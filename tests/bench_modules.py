"""The bench/ scripts as modules for the tests (bench/ is not a package): `bench/results.py` and
its protocol modules (`results_*`) import one another by name, so they are imported by name with
bench/ on sys.path (one module object each, which the tests monkeypatch); the other scripts are
loaded by path through the harness's own loader (``bench_module``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    if name == "results" or name.startswith("results_"):
        return importlib.import_module(name)
    return importlib.import_module("results_harness").bench_module(name)
