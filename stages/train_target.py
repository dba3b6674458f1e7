"""DVC stage `train_target@rN`: round rN's model, on source gold + the round's refined target
labels + λ·MLM."""

from pathlib import Path
from typing import Annotated

import typer

from glode.distributed import launch_workers, launched_rank
from glode.settings import DeviceSettings, RetrainSettings, TrainSettings
from glode.stagecli import command_line, format_record, run_app, single_command, with_settings
from glode.steps.train_target import train_target_round


@with_settings
def main(
    round: Annotated[str, typer.Option(help="Round to train (rN).")],
    prev_model: Annotated[Path, typer.Option(help="The previous round's model folder.")],
    pseudo: Annotated[Path, typer.Option(help="The round's pseudo_label folder.")],
    labels_table: Annotated[Path, typer.Option(help="The round's refined labels.parquet.")],
    out: Annotated[Path, typer.Option(help="Model folder to write.")],
    logs: Annotated[Path, typer.Option(help="dvclive log folder.")],
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    encoder: Annotated[Path, typer.Option(help="Encoder folder.")] = Path("encoder"),
    *,
    retrain: RetrainSettings,
    train: TrainSettings,
    device: DeviceSettings,
) -> None:
    """Train round rN's span NER model on source gold and the round's refined target labels."""
    if launch_workers(train.processes, device.device):  # train.processes > 1: the launched processes did it all
        return
    history = train_target_round(round, prev_model, tables, pseudo, labels_table, encoder, out, logs, train, retrain,
                                 device=device, command=command_line())
    if launched_rank() == 0:  # data-parallel: rank 0 prints them (its records hold the dev scores)
        for record in history:
            typer.echo(format_record(record))


if __name__ == "__main__":
    run_app(single_command(main))
