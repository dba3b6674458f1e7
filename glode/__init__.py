"""glode: cross-lingual NER by self-training with global-local denoised pseudo labels."""

import os as _os

__version__ = "0.1.0"

# OpenMP worker threads (torch's and faiss's libgomp) spin-wait for work by default. On a
# machine where another process holds a core, the spinning threads steal the time the
# working ones need and a training step becomes 3-10x slower (docs/BENCHMARKS.md, "Threads
# under contention"). Passive waiting costs nothing measurable on an idle machine. libgomp
# reads the variable once, when torch or faiss is first imported, so it is set here, before
# any glode module imports either; a value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
