"""DVC stage `check`: every params.yaml key checked at once, before anything reads or trains."""

from pathlib import Path
from typing import Annotated

import typer

from glode.steps.check import write_check_stamp
from glode.stagecli import run_app, single_command


def main(
    params: Annotated[Path, typer.Option(help="The params file to check.")] = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Stamp file written when every key is valid (same bytes for any valid file).")] = Path("logs/params-check.txt"),
) -> None:
    """Check types, ranges, choices, label sets, input paths and the rounds chain of params.yaml,
    and the limits of the encoder and the machine."""
    for note in write_check_stamp(params, out):
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{params}: every parameter is valid")


if __name__ == "__main__":
    run_app(single_command(main))
