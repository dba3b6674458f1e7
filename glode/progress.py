"""Progress reporting for every loop that can run for more than a few seconds.

On a terminal this is an ordinary tqdm bar. When standard error is not a terminal (``dvc
repro`` capturing a stage, a job scheduler's log file), a redrawn bar would fill the log with
carriage returns, so the same tqdm object prints one plain line at most every
``LOG_INTERVAL`` seconds and a last line when the loop ends. ``GLODE_QUIET=1`` in the
environment (or ``glode --quiet``) turns all of it off for scripted use. Under a launcher that
starts several processes (torchrun) only rank 0 shows bars: the others would repeat its lines.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

LOG_INTERVAL = 30.0  # seconds between progress lines when not on a terminal
QUIET_ENV = "GLODE_QUIET"


def quiet() -> bool:
    """True when the user asked for no progress output."""
    return os.environ.get(QUIET_ENV, "").strip().lower() not in ("", "0", "false", "no")


def other_rank() -> bool:
    """True in a launched process other than rank 0 (``RANK``, set by torchrun before any
    process group exists, so that encoding bars before training are covered too)."""
    return os.environ.get("RANK", "0").strip() not in ("", "0")


class LogLines(tqdm):
    """tqdm that writes whole lines (no carriage returns) at a slow rate: for log files."""

    monitor_interval = 0  # no monitor thread: its forced refreshes printed a second line at once

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0.0), kwargs["mininterval"])
        kwargs["ascii"] = True
        kwargs["leave"] = True  # the last line is what a log reader wants to see
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        self.fp.write((msg if msg is not None else self.__str__()) + "\n")
        self.fp.flush()
        self._logged_n = self.n
        return True

    def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
        """Postfix updates wait for the next timed line instead of forcing one."""
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)

    def close(self):
        """One last line with the final count (tqdm's own close would add an empty line)."""
        if self.disable:
            return
        if getattr(self, "_logged_n", None) != self.n:
            self.display()
        self.disable = True
        self._decr_instances(self)


def no_loading_bars() -> None:
    """Turn off transformers' "Loading weights" bar: loading a local folder takes a second, and
    the bar would be the only one of its kind in a stage's log. Downloads (``encoder.name`` a hub
    id) happen before any local load, so they keep theirs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def progress(iterable=None, *, total=None, desc: str = "", unit: str = "it", enabled: bool = True, **kwargs) -> tqdm:
    """A progress bar over ``iterable`` (or a manual one with ``total``), or a silent one.

    ``enabled=False`` (a caller's own switch), ``GLODE_QUIET`` and a rank other than 0 silence
    it; the returned object still supports ``update``/``set_postfix``/``close`` so callers need
    no branches.
    """
    disable = not enabled or quiet() or other_rank()
    stream = kwargs.pop("file", sys.stderr)
    on_terminal = hasattr(stream, "isatty") and stream.isatty()
    cls = tqdm if on_terminal else LogLines
    return cls(iterable, total=total, desc=desc, unit=unit, disable=disable, file=stream, **kwargs)
