"""DVC stage `evaluate@M`: entity scores of a model (r0 or a round's) on the target test set."""

from pathlib import Path
from typing import Annotated

import typer

from glode.device import scoring_device
from glode.distributed import launch_workers, sharded_scoring
from glode.settings import DeviceSettings, EvaluateSettings, TrainSettings
from glode.stagecli import options, run_app, single_command, with_settings
from glode.steps.evaluate import evaluate_model


@with_settings
def main(
    model: Annotated[Path, typer.Option(help="Model folder (models/rN).")],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON to write (metrics/rN.json).")],
    test: Annotated[Path, typer.Option(help="Prepared target test table.")] = Path("tables/target_test.parquet"),
    *,
    scoring: EvaluateSettings,
    device: Annotated[DeviceSettings, options("device")],  # --precision is evaluate.precision (EvaluateSettings)
    run: Annotated[TrainSettings, options("processes")],
) -> None:
    """Write seqeval strict-IOB2 micro P/R/F1, per-type scores and the paper's span F1."""
    device = scoring_device(device, scoring.precision)  # train.device, evaluate.precision (checked here)
    if launch_workers(run.processes, device.device, "scoring"):  # train.processes > 1: the launched processes did it
        return
    with sharded_scoring(device.device) as world:  # each process scores its share of the batches; rank 0 writes
        s = evaluate_model(model, test, metrics, scoring, device=device)
    if world.main:
        typer.echo(f"{model}: F1 {s['f1']:.4f} (P {s['precision']:.4f}, R {s['recall']:.4f}); span F1 {s['span']['f1']:.4f}")


if __name__ == "__main__":
    run_app(single_command(main))
