"""DVC stage `train_source`: round 0's model, on source gold spans + λ·MLM on target text."""

from pathlib import Path
from typing import Annotated

import typer

from glode.distributed import launch_workers, launched_rank
from glode.settings import DeviceSettings, LanguageSettings, ModelSettings, TrainSettings
from glode.stagecli import command_line, format_record, run_app, single_command, with_settings
from glode.steps.train_source import train_source_model


@with_settings
def main(
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    encoder: Annotated[Path, typer.Option(help="Encoder folder.")] = Path("encoder"),
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = Path("models/r0"),
    logs: Annotated[Path, typer.Option(help="dvclive log folder.")] = Path("logs/r0"),
    *,
    language: LanguageSettings,
    model: ModelSettings,
    train: TrainSettings,
    device: DeviceSettings,
) -> None:
    """Train round 0's span NER model on the source language (+ λ·MLM on target text)."""
    if launch_workers(train.processes, device.device):  # train.processes > 1: the launched processes did it all
        return
    history = train_source_model(tables, encoder, out, logs, language.target, model, train, device=device,
                                 command=command_line())
    if launched_rank() == 0:  # data-parallel: rank 0 prints them (its records hold the dev scores)
        for record in history:
            typer.echo(format_record(record))


if __name__ == "__main__":
    run_app(single_command(main))
