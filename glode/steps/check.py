"""The ``check`` stage: every params.yaml key checked at once (glode/params.py), before anything
reads or trains."""

from __future__ import annotations

from pathlib import Path

from glode.atomic import atomic_write_bytes
from glode.params import check_file

CHECK_STAMP = "params.yaml passed the glode parameter check\n"


def write_check_stamp(params: str | Path, out: str | Path) -> None:
    """Check the whole file, then write a stamp whose bytes never depend on the values, so a
    valid change (``dvc exp run -S k=500``) reruns only the stages that read it."""
    check_file(params)
    atomic_write_bytes(out, CHECK_STAMP.encode("utf-8"))
