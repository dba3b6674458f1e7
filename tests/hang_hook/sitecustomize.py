"""Test hook (only on PYTHONPATH in tests that kill a stage mid-write).

With ``GLODE_TEST_HANG=SCRIPT:NAME:MARKER`` set, a Python process whose ``sys.argv[0]`` ends
with ``SCRIPT`` stops when it is about to rename a finished temporary file or folder onto
``NAME`` (the base name of an output): it writes its pid to ``MARKER`` and sleeps, so the test
can kill it at that point. Every other process runs unchanged.
"""

import os

_SPEC = os.environ.get("GLODE_TEST_HANG")
if _SPEC:
    import sys
    import time

    _script, _name, _marker = _SPEC.split(":", 2)
    _replace = os.replace

    def _hanging_replace(src, dst, *args, **kwargs):
        if sys.argv and str(sys.argv[0]).endswith(_script) and os.path.basename(os.fspath(dst)) == _name:
            with open(_marker + ".part", "w") as fh:
                fh.write(str(os.getpid()))
            _replace(_marker + ".part", _marker)
            time.sleep(600)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _hanging_replace
