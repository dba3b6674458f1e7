"""Shared entry-point behaviour for stage scripts and the ``glode`` command.

A ``GlodeError`` becomes one clear line on stderr and exit status 1, instead of a traceback;
a usage error (unknown option, bad value, missing option) one line and click's exit status 2;
a full disk (or another write failure of the filesystem) one line naming what could not be
written. SIGTERM (what ``kill`` and most job schedulers send) and SIGINT (Ctrl-C) raise
``SystemExit`` inside the stage, so the atomic writers of ``glode.atomic`` remove their
temporary output before the process exits with status 143 or 130 and one line saying so.
(typer turns a ``KeyboardInterrupt`` into an exit code that its non-standalone mode returns
instead of raising, which is how Ctrl-C used to end a stage with status 0.)
"""

from __future__ import annotations

import functools
import inspect
import signal
from dataclasses import fields
import sys
from pathlib import Path
from typing import Annotated, Callable

import typer

from glode.atomic import WRITE_FAILURES
from glode.errors import GlodeError
from glode.settings import DeviceSettings, MlmVocab, Precision, TrainSettings


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


class TrainOptions:
    """The Typer options of the ``train`` section, which the train_source and train_target stages
    share (:func:`with_train_options`); their defaults are those of :class:`TrainSettings`."""

    epochs = Annotated[int, typer.Option(help="Passes over the source sentences.")]
    lr = Annotated[float, typer.Option(help="Encoder learning rate (AdamW).")]
    head_lr = Annotated[float, typer.Option(help="Learning rate of the span head.")]
    batch_size = Annotated[int, typer.Option(help="Sentences per batch.")]
    seed = Annotated[int, typer.Option(help="Random seed.")]
    weight_decay = Annotated[float, typer.Option(help="AdamW weight decay.")]
    adam_beta2 = Annotated[float, typer.Option(help="AdamW's second-moment decay (the reference: 0.98).")]
    warmup_ratio = Annotated[float, typer.Option(help="Share of steps with linear warm-up.")]
    grad_clip = Annotated[float, typer.Option(help="Gradient norm clip (0: off).")]
    mlm_weight = Annotated[float, typer.Option(help="λ, weight of the masked-LM loss on target text (0: off).")]
    mlm_rate = Annotated[float, typer.Option(help="Share of sub-tokens masked for the MLM loss.")]
    mlm_batch_size = Annotated[int, typer.Option(help="Target sentences per masked-LM batch (the MLM pass dominates "
                                                 "step time).")]
    mlm_vocab = Annotated[MlmVocab, typer.Option(help="The masked-LM softmax's vocabulary: full (every encoder "
                                                 "sub-token) or corpus (the sub-tokens of the MLM text, ~3% of "
                                                 "the 250k of the default encoder: a far cheaper output layer).")]
    freeze_word_embeddings = Annotated[bool, typer.Option(help="Freeze the word-embedding matrix (about halves step "
                                                          "time).")]
    eval_batch_size = Annotated[int, typer.Option(help="Sentences per batch when scoring dev.")]
    grad_accum = Annotated[int, typer.Option(help="Micro-batches of --batch-size per optimiser step (the effective "
                                             "batch is their product).")]
    device = Annotated[str, typer.Option(help="Where the model runs: auto (CUDA, then MPS, then the CPU), cpu, "
                                         "cuda, cuda:N or mps.")]
    precision = Annotated[Precision, typer.Option(help="fp32, bf16 (autocast; CUDA or CPU) or fp16 (autocast and a "
                                                  "loss scaler; CUDA).")]


def _option_default(settings, name: str):
    """A settings field's default as its Typer option wants it (a choice as its enum member)."""
    value = getattr(settings, name)
    choices = {"precision": Precision, "mlm_vocab": MlmVocab}
    return choices[name](value) if name in choices else value


def device_option_defaults() -> dict:
    """``{"device": ..., "precision": ...}``: the defaults of the scoring stages' device options."""
    return {f.name: _option_default(DeviceSettings(), f.name) for f in fields(DeviceSettings)}


def with_train_options(main: Callable) -> Callable:
    """``main`` with the options of :class:`TrainOptions` added to the signature Typer reads;
    their values arrive in ``main``'s ``**train`` (for ``TrainSettings.from_options(train)`` and
    ``DeviceSettings.from_options(train)``)."""
    signature = inspect.signature(main)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    train = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=_option_default(defaults, f.name),
                               annotation=getattr(TrainOptions, f.name))
             for defaults in (TrainSettings(), DeviceSettings()) for f in fields(defaults)]

    @functools.wraps(main)
    def with_options(**options):
        return main(**options)

    with_options.__signature__ = signature.replace(parameters=[*own, *train])
    return with_options


def command_line() -> str:
    """This process's command line as a shell would take it (``python stages/...``), for model cards."""
    import shlex

    return shlex.join(["python", *sys.argv])


def format_record(record: dict) -> str:
    """One training record (an epoch's losses and dev scores) as a line of ``key=value``."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
