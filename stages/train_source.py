"""DVC stage `train_source`: round 0's model, on source gold spans + λ·MLM on target text."""

from pathlib import Path
from typing import Annotated

import typer

from glode.settings import DeviceSettings, ModelSettings, TrainSettings, option_keys
from glode.stagecli import command_line, format_record, run_app, single_command, with_train_options
from glode.steps.train_source import train_source_model

# options that DVC fills from params.yaml, and their keys there
PARAMS = option_keys(ModelSettings, TrainSettings, DeviceSettings)
_MODEL = ModelSettings()


@with_train_options
def main(
    target: Annotated[str, typer.Option(help="Target language code (selects the span cap).")],
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    encoder: Annotated[Path, typer.Option(help="Encoder folder.")] = Path("encoder"),
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = Path("models/r0"),
    logs: Annotated[Path, typer.Option(help="dvclive log folder.")] = Path("logs/r0"),
    max_span_len: Annotated[int, typer.Option(help="Longest candidate span, in words.")] = _MODEL.max_span_len,
    max_span_len_char: Annotated[int, typer.Option(help="Longest candidate span for character-tokenised languages.")] = _MODEL.max_span_len_char,
    char_languages: Annotated[list[str], typer.Option(help="Character-tokenised target languages (repeat).")] = _MODEL.char_languages,
    max_seq_len: Annotated[int, typer.Option(help="Sub-tokens per sentence, specials included; words beyond are cut and counted.")] = _MODEL.max_seq_len,
    **train,
) -> None:
    """Train round 0's span NER model on the source language (+ λ·MLM on target text)."""
    history = train_source_model(tables, encoder, out, logs, target, ModelSettings.from_options(locals()),
                                 TrainSettings.from_options(train), device=DeviceSettings.from_options(train),
                                 command=command_line())
    for record in history:
        typer.echo(format_record(record))


if __name__ == "__main__":
    run_app(single_command(main))
