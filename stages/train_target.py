"""DVC stage `train_target@rN`: round rN's model, on source gold + the round's refined target
labels + λ·MLM."""

from pathlib import Path
from typing import Annotated

import typer

from glode.settings import DeviceSettings, Init, RetrainSettings, TargetLoss, TrainSettings, option_keys
from glode.stagecli import command_line, format_record, run_app, single_command, with_train_options
from glode.steps.train_target import train_target_round

# options that DVC fills from params.yaml, and their keys there
PARAMS = option_keys(TrainSettings, DeviceSettings, RetrainSettings)
_RETRAIN = RetrainSettings()


@with_train_options
def main(
    round: Annotated[str, typer.Option(help="Round to train (rN).")],
    prev_model: Annotated[Path, typer.Option(help="The previous round's model folder.")],
    pseudo: Annotated[Path, typer.Option(help="The round's pseudo_label folder.")],
    labels_table: Annotated[Path, typer.Option(help="The round's refined labels.parquet.")],
    out: Annotated[Path, typer.Option(help="Model folder to write.")],
    logs: Annotated[Path, typer.Option(help="dvclive log folder.")],
    init: Annotated[Init, typer.Option(help="Start from the pretrained 'encoder' (paper), the 'previous' model, or "
                                       "'chain': r1 from the encoder, later rounds from the previous one "
                                       "(progressive mode).")] = Init(_RETRAIN.init),
    retrain_epochs: Annotated[float, typer.Option(help="Passes over the source sentences this round (a fraction is "
                                                  "allowed; 0: the same as --epochs).")] = _RETRAIN.epochs,
    target_loss: Annotated[TargetLoss, typer.Option(help="Loss on the target labels: soft-ce, -sum Y log softmax(z); "
                                                    "reference, the authors' -sum Y log softmax(softmax(z)), which "
                                                    "ignores a small entity mass on O spans (docs/METHOD.md §3).")
                           ] = TargetLoss(_RETRAIN.target_loss),
    harden_o: Annotated[float, typer.Option(help="A target label whose top class is O and whose entity mass is at "
                                            "most this trains as one-hot O (0: off).")] = _RETRAIN.harden_o,
    schedule_rounds: Annotated[int, typer.Option(help="With --init chain: one AdamW state and one LR schedule over "
                                                 "this many chained rounds (0: each round its own).")
                               ] = _RETRAIN.schedule_rounds,
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    encoder: Annotated[Path, typer.Option(help="Encoder folder.")] = Path("encoder"),
    **train,
) -> None:
    """Train round rN's span NER model on source gold and the round's refined target labels."""
    history = train_target_round(round, prev_model, tables, pseudo, labels_table, encoder, out, logs,
                                 TrainSettings.from_options(train), RetrainSettings.from_options(locals()),
                                 device=DeviceSettings.from_options(train), command=command_line())
    for record in history:
        typer.echo(format_record(record))


if __name__ == "__main__":
    run_app(single_command(main))
