"""Shared entry-point behaviour for stage scripts and the ``glode`` command.

A ``GlodeError`` becomes one clear line on stderr and exit status 1, instead of a traceback;
a usage error (unknown option, bad value, missing option) one line and click's exit status 2;
a full disk (or another write failure of the filesystem) one line naming what could not be
written. SIGTERM (what ``kill`` and most job schedulers send) and SIGINT (Ctrl-C) raise
``SystemExit`` inside the stage, so the atomic writers of ``glode.atomic`` remove their
temporary output before the process exits with status 143 or 130 and one line saying so.
(typer turns a ``KeyboardInterrupt`` into an exit code that its non-standalone mode returns
instead of raising, which is how Ctrl-C used to end a stage with status 0.)

A stage declares none of the options DVC fills from ``params.yaml``: :func:`with_settings` makes
them from the declarations of ``glode/settings.py`` and hands the stage its settings objects.
"""

from __future__ import annotations

import enum
import functools
import inspect
import re
import signal
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

from glode.atomic import WRITE_FAILURES
from glode.errors import GlodeError
from glode.settings import Param, Settings


INTERRUPTED = 128 + signal.SIGINT  # 130, what shells report for Ctrl-C


def run_app(app: typer.Typer) -> None:
    """Run a Typer app, turning user-fixable errors into a message and a non-zero exit."""
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job of a script ignores Ctrl-C: keep that
        signal.signal(signal.SIGINT, _interrupt)
    try:
        code = app(standalone_mode=False)
    except GlodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _interrupt(signal.SIGINT, None)
    except _CLICK_ERRORS as exc:  # usage errors arrive here in non-standalone mode
        print(f"error: {usage_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno not in WRITE_FAILURES:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}; outputs are written whole or not at all, so the previous ones "
              "are intact; free some space and run again", file=sys.stderr)
        sys.exit(1)
    # non-standalone typer returns an exit code instead of raising: Ctrl-C arrives as 130 when
    # the SIGINT handler is not ours (a KeyboardInterrupt raised by other code), typer.Exit(N) as N
    if isinstance(code, int) and not isinstance(code, bool) and code:
        if code == INTERRUPTED:
            print("interrupted; partial outputs removed", file=sys.stderr)
        sys.exit(code)


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


def _interrupt(signum, frame) -> None:
    """Ctrl-C: like SIGTERM, a ``SystemExit`` that the atomic writers clean up after."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    print("interrupted; partial outputs removed", file=sys.stderr)
    raise SystemExit(INTERRUPTED)


def single_command(fn: Callable) -> typer.Typer:
    """A one-command Typer app whose help comes from the function's docstring."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(fn)
    return app


@dataclass(frozen=True)
class Options:
    """Which options of a settings class a stage takes (:func:`options`)."""

    only: tuple[str, ...] | None = None
    hidden: tuple[str, ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()


def options(*only: str, hidden: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> Options:
    """For ``Annotated[SomeSettings, options(...)]``: only the fields ``only`` (all when none are
    given) become options; the fields ``hidden`` are taken but left out of ``--help`` (DVC passes
    a whole section, and the stage does not read them); ``defaults`` gives a command outside the
    pipeline its own default for a field (``glode predict --precision auto``), still checked by the
    field's declaration."""
    return Options(tuple(only) or None, tuple(hidden), tuple((defaults or {}).items()))


_ENUMS: dict[str, type[enum.Enum]] = {}


def _option_type(p: Param) -> Any:
    """The Typer type of a key's option: a str enum of its choices (an unknown choice is a usage
    error), a list of strings, or the key's type."""
    if p.choices:
        if p.key not in _ENUMS:
            name = "".join(part.title() for part in re.split(r"[.-]", p.key))
            _ENUMS[p.key] = enum.Enum(name, [(c, c) for c in p.choices], type=str, module=__name__)
        return _ENUMS[p.key]
    return list[str] if p.type is list else p.type


def _settings_class(annotation: Any) -> tuple[type[Settings] | None, Options]:
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        chosen = next((x for x in extra if isinstance(x, Options)), Options())
        return _settings_class(base)[0], chosen
    if isinstance(annotation, type) and issubclass(annotation, Settings):
        return annotation, Options()
    return None, Options()


def with_settings(main: Callable) -> Callable:
    """``main`` with each parameter annotated with a settings class (``device: DeviceSettings``,
    or ``Annotated[DenoiseSettings, options(...)]``) replaced by the options of that class's
    fields, made from their declarations (glode/settings.py): name, type, default, help, choices.
    The command gets them as Typer reads them; ``main`` gets the settings object, built and
    checked (a bad value is a ParamError naming its params.yaml key). ``param_keys`` of the
    result maps each such option to its key (the options DVC fills from params.yaml)."""
    signature = inspect.signature(main, eval_str=True)
    own, generated, groups, keys = [], [], {}, {}
    for parameter in signature.parameters.values():
        cls, chosen = _settings_class(parameter.annotation)
        if cls is None:
            own.append(parameter)
            continue
        unknown = ({*(chosen.only or ()), *chosen.hidden, *dict(chosen.defaults)}) - set(cls.params())
        if unknown:
            raise TypeError(f"{main.__name__}: {cls.__name__} has no fields {sorted(unknown)}")
        declared = [p for name, p in cls.params().items() if chosen.only is None or name in chosen.only]
        groups[parameter.name] = (cls, [p.option for p in declared])
        for p in declared:
            if p.option in keys:
                raise TypeError(f"{main.__name__}: two options are called --{p.option.replace('_', '-')}")
            keys[p.option] = p.key
            option_type, default = _option_type(p), dict(chosen.defaults).get(p.field, p.option_default())
            if isinstance(option_type, type) and issubclass(option_type, enum.Enum):
                default = option_type(default)
            generated.append(inspect.Parameter(
                p.option, inspect.Parameter.KEYWORD_ONLY, default=default,
                annotation=Annotated[option_type, typer.Option(help=p.help, hidden=p.field in chosen.hidden)]))

    clash = set(keys) & {parameter.name for parameter in own}
    if clash:
        raise TypeError(f"{main.__name__}: {sorted(clash)} are both its own parameters and settings options")

    @functools.wraps(main)
    def with_options(**values):
        built = {name: cls.from_options({opt: values.pop(opt) for opt in opts}) for name, (cls, opts) in groups.items()}
        return main(**values, **built)

    with_options.__signature__ = signature.replace(parameters=[*own, *generated])
    with_options.param_keys = keys
    return with_options


def command_line() -> str:
    """This process's command line as a shell would take it (``python stages/...``), for model cards."""
    import shlex

    return shlex.join(["python", *sys.argv])


def format_record(record: dict) -> str:
    """One training record (an epoch's losses and dev scores) as a line of ``key=value``."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
