"""Shared entry-point behaviour for stage scripts and the ``glode`` command.

A ``GlodeError`` becomes one clear line on stderr and exit status 1, instead of a traceback;
a usage error (unknown option, bad value, missing option) one line and click's exit status 2.
SIGTERM (what ``kill`` and most job schedulers send) raises ``SystemExit`` inside the stage,
so the atomic writers of ``glode.atomic`` remove their temporary output before the process
exits with status 143.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Callable

import typer

from glode.errors import GlodeError


def run_app(app: typer.Typer) -> None:
    """Run a Typer app, turning user-fixable errors into a message and a non-zero exit."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(standalone_mode=False)
    except GlodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except _CLICK_ERRORS as exc:  # usage errors arrive here in non-standalone mode
        print(f"error: {usage_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)


def _click_errors() -> tuple[type[Exception], ...]:
    """typer 0.29 raises the exceptions of its vendored click, which are not plain click's."""
    import click

    errors: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as vendored
    except ImportError:  # a typer that uses plain click
        pass
    else:
        errors.append(vendored)
    return tuple(errors)


_CLICK_ERRORS = _click_errors()


def usage_line(exc: Exception) -> str:
    """One line for a click usage error: the command, what is wrong, where to find help."""
    ctx = getattr(exc, "ctx", None)
    prog = ctx.command_path if ctx is not None else Path(sys.argv[0]).name
    msg = " ".join(exc.format_message().split())
    return f"{prog}: {msg} (see '{prog} --help')"


def _terminate(signum, frame) -> None:
    print("terminated; partial outputs removed", file=sys.stderr)
    raise SystemExit(128 + signum)


def single_command(fn: Callable) -> typer.Typer:
    """A one-command Typer app whose help comes from the function's docstring."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(fn)
    return app
