"""DVC stage `initial_labels`: Y0, the source model's soft labels of the target corpus."""

from pathlib import Path
from typing import Annotated

import typer

from glode.device import scoring_device
from glode.distributed import launch_workers, sharded_scoring
from glode.settings import DeviceSettings, EvaluateSettings, TrainSettings
from glode.stagecli import options, run_app, single_command, with_settings
from glode.steps.initial_labels import initial_labels


@with_settings
def main(
    model: Annotated[Path, typer.Option(help="Source model folder.")] = Path("models/r0"),
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    out: Annotated[Path, typer.Option(help="Label table to write.")] = Path("rounds/r0/labels.parquet"),
    metrics: Annotated[Path, typer.Option(help="Pseudo-label statistics JSON.")] = Path("metrics/denoise/r0.json"),
    *,
    scoring: EvaluateSettings,
    device: Annotated[DeviceSettings, options("device")],  # --precision is evaluate.precision (EvaluateSettings)
    run: Annotated[TrainSettings, options("processes")],
) -> None:
    """Kept non-O predictions keep their distribution; every other span is one-hot O."""
    device = scoring_device(device, scoring.precision)  # train.device, evaluate.precision (checked here)
    if launch_workers(run.processes, device.device, "scoring"):  # train.processes > 1: the launched processes did it
        return
    with sharded_scoring(device.device) as world:  # each process scores its share of the batches; rank 0 writes
        s = initial_labels(model, tables, out, metrics, scoring, device=device)
    f1 = s.get("pseudo_label_f1")
    if world.main:
        typer.echo(f"{out}: {s['label_rows']} rows" + (f", pseudo-label F1 {f1:.4f}" if f1 is not None else ""))


if __name__ == "__main__":
    run_app(single_command(main))
