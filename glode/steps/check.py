"""The ``check`` stage: every params.yaml key checked at once (glode/params.py), and the limits
that depend on the encoder and the machine (glode/limits.py), before anything reads or trains."""

from __future__ import annotations

from pathlib import Path

from glode.atomic import atomic_write_bytes
from glode.limits import check_params_file

CHECK_STAMP = "params.yaml passed the glode parameter check\n"


def write_check_stamp(params: str | Path, out: str | Path) -> list[str]:
    """Check the whole file, then write a stamp whose bytes never depend on the values, so a
    valid change (``dvc exp run -S k=500``) reruns only the stages that read it. Returns the
    notes on values that have no effect (:func:`glode.params.param_notes`)."""
    _, notes = check_params_file(params)
    atomic_write_bytes(out, CHECK_STAMP.encode("utf-8"))
    return notes
