"""Test hook (only on PYTHONPATH in the tests of ``train.processes``, tests/test_distributed.py).

With ``GLODE_TEST_NO_DROPOUT=1`` every ``torch.nn.Dropout`` is made with p = 0 (the encoder's,
whose attention reads its module's p, and the span head's), so that a stage trained as several
processes can be compared with one process (each process draws its own dropout masks). With
``GLODE_TEST_FAIL_RANK=N`` the launched process of rank N exits with status 3 as it starts.
Every other process runs unchanged.
"""

import os

if os.environ.get("GLODE_TEST_FAIL_RANK") and os.environ.get("RANK") == os.environ["GLODE_TEST_FAIL_RANK"]:
    import sys

    print(f"rank {os.environ['RANK']} fails on purpose (GLODE_TEST_FAIL_RANK)", file=sys.stderr, flush=True)
    os._exit(3)  # (site turns a SystemExit in sitecustomize into a traceback and status 1)

if os.environ.get("GLODE_TEST_NO_DROPOUT") == "1":
    import torch

    _init = torch.nn.Dropout.__init__

    def _no_dropout(self, p=0.5, inplace=False):
        _init(self, 0.0, inplace)

    torch.nn.Dropout.__init__ = _no_dropout
