"""The bench/ scripts as modules for the tests (bench/ is not a package): bench/results.py is
loaded by path, the others through its own loader (``bench_module``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def load(name: str):
    if "glode_bench_results" not in sys.modules:
        spec = importlib.util.spec_from_file_location("glode_bench_results", Path(__file__).parent.parent / "bench" / "results.py")
        sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    results = sys.modules["glode_bench_results"]
    return results if name == "results" else results.bench_module(name)
