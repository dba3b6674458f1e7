"""DVC stage `pseudo_label@rN`: model r{prev} scores every candidate span; vectors for denoising."""

from pathlib import Path
from typing import Annotated

import typer

from glode.rounds import check_prev
from glode.settings import DenoiseSettings, DeviceSettings, EvaluateSettings, Features, Projection
from glode.stagecli import TrainOptions, device_option_defaults, run_app, single_command
from glode.steps.pseudo_label import pseudo_label_round

# options that DVC fills from params.yaml, and their keys there
PARAMS = {**DenoiseSettings.option_keys("dim", "seed", "projection", "features"), **EvaluateSettings.option_keys(),
          **DeviceSettings.option_keys()}
_DEVICE = device_option_defaults()
_VECTORS = DenoiseSettings()


def main(
    round: Annotated[str, typer.Option(help="This round's name (rN).")],
    prev: Annotated[str, typer.Option(help="The round it builds on (r0 or an earlier round).")],
    out: Annotated[Path, typer.Option(help="Output folder (rounds/rN/pseudo).")],
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    models: Annotated[Path, typer.Option(help="Folder holding the round models (models/rN).")] = Path("models"),
    dim: Annotated[int, typer.Option(help="Dimension of the span vectors (0: keep the full feature).")] = _VECTORS.dim,
    projection: Annotated[Projection, typer.Option(help="'svd' (uncentred top singular axes), 'random' (seeded "
                                                   "Gaussian, as the reference), or 'pca' (centred; the old "
                                                   "behaviour).")] = Projection(_VECTORS.projection),
    features: Annotated[Features, typer.Option(help="Span vectors from the round's 'model', or from the pretrained "
                                               "'encoder' (which no pseudo label trained; one more encoder pass).")
                        ] = Features(_VECTORS.features),
    encoder: Annotated[Path, typer.Option(help="The pretrained encoder folder (for --features encoder).")] = Path("encoder"),
    seed: Annotated[int, typer.Option(help="Seed of the projection's fitting sample or random matrix.")] = _VECTORS.seed,
    batch_size: Annotated[int, typer.Option(help="Sentences per batch.")] = EvaluateSettings().batch_size,
    device: TrainOptions.device = _DEVICE["device"],
    precision: TrainOptions.precision = _DEVICE["precision"],
) -> None:
    """Write spans.parquet (class probabilities of every target candidate span) and the
    L2-normalised span vectors of target and source spans."""
    vectors = DenoiseSettings.from_options(locals())
    scoring = EvaluateSettings.from_options(locals())
    check_prev(round, prev)
    info = pseudo_label_round(models / prev, tables, out, vectors, scoring, encoder_dir=encoder,
                              device=DeviceSettings.from_options(locals()))
    typer.echo(f"{out}: {info['target_spans']} target spans, {info['source_spans']} source spans, "
               f"dim {info['dim']} ({vectors.features} features, {vectors.projection})")


if __name__ == "__main__":
    run_app(single_command(main))
