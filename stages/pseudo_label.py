"""DVC stage `pseudo_label@rN`: model r{prev} scores every candidate span; vectors for denoising."""

from pathlib import Path
from typing import Annotated

import typer

from glode.rounds import check_prev
from glode.selftrain import pseudo_label_round
from glode.params import check_options
from glode.stagecli import run_app, single_command

# options that DVC fills from params.yaml, and their keys there
PARAMS = {"dim": "denoise.dim", "seed": "denoise.seed", "batch_size": "evaluate.batch-size",
          "projection": "denoise.projection", "features": "denoise.features"}


def main(
    round: Annotated[str, typer.Option(help="This round's name (rN).")],
    prev: Annotated[str, typer.Option(help="The round it builds on (r0 or an earlier round).")],
    out: Annotated[Path, typer.Option(help="Output folder (rounds/rN/pseudo).")],
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    models: Annotated[Path, typer.Option(help="Folder holding the round models (models/rN).")] = Path("models"),
    dim: Annotated[int, typer.Option(help="Dimension of the span vectors (0: keep the full feature).")] = 128,
    projection: Annotated[str, typer.Option(help="'svd' (uncentred top singular axes), 'random' (seeded Gaussian, "
                                            "as the reference), or 'pca' (centred; the old behaviour).")] = "svd",
    features: Annotated[str, typer.Option(help="Span vectors from the round's 'model', or from the pretrained "
                                          "'encoder' (which no pseudo label trained; one more encoder pass).")] = "model",
    encoder: Annotated[Path, typer.Option(help="The pretrained encoder folder (for --features encoder).")] = Path("encoder"),
    seed: Annotated[int, typer.Option(help="Seed of the projection's fitting sample or random matrix.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Sentences per batch.")] = 64,
) -> None:
    """Write spans.parquet (class probabilities of every target candidate span) and the
    L2-normalised span vectors of target and source spans."""
    check_options(locals(), PARAMS)
    check_prev(round, prev)
    model = models / prev
    info = pseudo_label_round(model, tables, out, dim=dim, seed=seed, batch_size=batch_size, projection=projection,
                              features=features, encoder_dir=encoder)
    typer.echo(f"{out}: {info['target_spans']} target spans, {info['source_spans']} source spans, "
               f"dim {info['dim']} ({features} features, {projection})")


if __name__ == "__main__":
    run_app(single_command(main))
