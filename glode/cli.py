"""The ``glode`` command: helpers around the DVC pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glode.stagecli import run_app

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="glode: cross-lingual NER by self-training with global-local denoised pseudo labels. "
    "The pipeline itself runs with `dvc repro`; these commands help around it.",
)


@app.command()
def rounds(
    n: Annotated[int, typer.Argument(help="Number of self-training rounds after the source model r0.")],
    params: Annotated[Path, typer.Option(help="The params file to rewrite.")] = Path("params.yaml"),
) -> None:
    """Rewrite the `rounds` chain in params.yaml for N rounds (r1 <- r0, r2 <- r1, ...).

    DVC cannot take `-S rounds=3`; run this, then `dvc repro` (or `dvc exp run`).
    """
    from glode.rounds import rewrite_rounds

    chain = rewrite_rounds(params, n)
    typer.echo(f"{params}: {len(chain)} round(s): " + (", ".join(f"{k} <- {v['prev']}" for k, v in chain.items()) or "none"))


@app.command("build-encoder")
def build_encoder(
    name: Annotated[str, typer.Argument(help="'embedded', a local folder or a Hugging Face id.")] = "embedded",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("encoder"),
) -> None:
    """Materialise an encoder folder outside the pipeline (what the `encoder` stage runs)."""
    from glode.encoder import materialise_encoder

    typer.echo(f"written {materialise_encoder(name, out)}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
