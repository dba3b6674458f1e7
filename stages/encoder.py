"""DVC stage `encoder`: materialise the encoder named in params as a local HF directory."""

from pathlib import Path
from typing import Annotated

import typer

from glode.encoder.build import materialise_encoder
from glode.settings import EncoderSettings
from glode.stagecli import run_app, single_command, with_settings


@with_settings
def main(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("encoder"),
    *,
    encoder: EncoderSettings,
) -> None:
    """Write an encoder folder that AutoModel/AutoTokenizer load offline."""
    path = materialise_encoder(encoder.name, out)
    typer.echo(f"encoder '{encoder.name}' written to {path}")


if __name__ == "__main__":
    run_app(single_command(main))
