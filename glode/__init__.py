"""glode: cross-lingual NER by self-training with global-local denoised pseudo labels."""

import os as _os

# torch's and faiss's OpenMP threads (libgomp) spin for about 300,000 iterations when they run
# out of work before they sleep. With every core busy that is fine; with another process on
# one of the cores, the spinning threads take the time the working ones need, and a training
# step beside a single busy core took 2.4-3.3x its idle time. Passive waiting (no spin) keeps
# that to ~1.2x but makes the idle step ~20-30% slower (wake-ups between the many small
# parallel regions of a step). A short spin of 3,000 iterations keeps the idle speed and
# ~1.9x beside a busy core (docs/BENCHMARKS.md, "Threads under contention"). libgomp reads the
# variable once, when torch or faiss is first imported, so it is set here, before any glode
# module imports either; whatever the user set (GOMP_SPINCOUNT or OMP_WAIT_POLICY) wins.
SPIN_COUNT = "3000"
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def __getattr__(name: str):
    """``glode.__version__``: the installed distribution's version; ``pyproject.toml`` holds the only copy."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("glode")
        except PackageNotFoundError:  # run from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'glode' has no attribute {name!r}")
