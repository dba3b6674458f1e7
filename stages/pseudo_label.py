"""DVC stage `pseudo_label@rN`: model r{prev} scores every candidate span; vectors for denoising."""

from pathlib import Path
from typing import Annotated

import typer

from glode.device import scoring_device
from glode.distributed import launch_workers, rank_output, sharded_scoring
from glode.rounds import check_prev
from glode.settings import DenoiseSettings, DeviceSettings, EvaluateSettings, TrainSettings
from glode.stagecli import options, run_app, single_command, with_settings
from glode.steps.pseudo_label import pseudo_label_round


@with_settings
def main(
    round: Annotated[str, typer.Option(help="This round's name (rN).")],
    prev: Annotated[str, typer.Option(help="The round it builds on (r0 or an earlier round).")],
    out: Annotated[Path, typer.Option(help="Output folder (rounds/rN/pseudo).")],
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    models: Annotated[Path, typer.Option(help="Folder holding the round models (models/rN).")] = Path("models"),
    encoder: Annotated[Path, typer.Option(help="The pretrained encoder folder (for --features encoder).")] = Path("encoder"),
    *,
    vectors: Annotated[DenoiseSettings, options("dim", "projection", "features", "seed")],
    scoring: EvaluateSettings,
    device: Annotated[DeviceSettings, options("device")],  # --precision is evaluate.precision (EvaluateSettings)
    run: Annotated[TrainSettings, options("processes")],
) -> None:
    """Write spans.parquet (class probabilities of every target candidate span) and the
    L2-normalised span vectors of target and source spans."""
    check_prev(round, prev)
    device = scoring_device(device, scoring.precision)  # train.device, evaluate.precision (checked here)
    if launch_workers(run.processes, device.device, "scoring"):  # train.processes > 1: the launched processes did it
        return
    # each process scores its share of the batches; rank 0 writes the folder, the others a throwaway copy
    with sharded_scoring(device.device) as world, rank_output(out) as folder:
        info = pseudo_label_round(models / prev, tables, folder, vectors, scoring, encoder_dir=encoder, device=device)
    if world.main:
        typer.echo(f"{out}: {info['target_spans']} target spans, {info['source_spans']} source spans, "
                   f"dim {info['dim']} ({vectors.features} features, {vectors.projection})")


if __name__ == "__main__":
    run_app(single_command(main))
