"""DVC stage `prepare`: validate the CoNLL inputs and write parquet sentence tables."""

from pathlib import Path
from typing import Annotated

import typer

from glode.settings import DataSettings
from glode.stagecli import run_app, single_command
from glode.steps.prepare import prepare_tables

# options that DVC fills from params.yaml, and their keys there
PARAMS = DataSettings.option_keys()
_DATA = DataSettings()


def main(
    source_train: Annotated[Path, typer.Option(help="Labelled source-language training file (CoNLL).")],
    source_dev: Annotated[Path, typer.Option(help="Labelled source-language dev file (CoNLL).")],
    target_unlabelled: Annotated[Path, typer.Option(help="Target-language corpus; its tags are used only for diagnostics.")],
    target_test: Annotated[Path, typer.Option(help="Labelled target-language test file (CoNLL).")],
    # none by default: DVC passes no option for `data.labels: []`, which must fail as a bad data.labels
    labels: Annotated[list[str], typer.Option(help="Entity types (repeat the option); O is implicit.")] = [],
    out: Annotated[Path, typer.Option(help="Output folder for the parquet tables.")] = Path("tables"),
    max_source_sentences: Annotated[int, typer.Option(help="Use at most this many source training sentences (0: all).")] = _DATA.max_source_sentences,
    max_target_sentences: Annotated[int, typer.Option(help="Use at most this many unlabelled target sentences (0: all).")] = _DATA.max_target_sentences,
    ignore_labels: Annotated[list[str], typer.Option(help="Entity types read as O in every file (repeat), e.g. MISC when the target data has none.")] = _DATA.ignore_labels,
) -> None:
    """Read, validate and normalise (IOB1/BIO2 to BIO2) the four corpora into parquet tables."""
    data = DataSettings.from_options(locals())
    files = {
        "source_train": source_train,
        "source_dev": source_dev,
        "target_unlabelled": target_unlabelled,
        "target_test": target_test,
    }
    stats = prepare_tables(files, data, out)
    for name in files:
        s = stats[name]
        ignored = f", ignored {s['ignored_entities']}" if s["ignored_entities"] else ""
        typer.echo(f"{name}: {s['sentences']} sentences, {s['entities']} entities{ignored} ({s['file']})")
    for warning in stats["warnings"]:
        typer.echo(f"warning: {warning}", err=True)


if __name__ == "__main__":
    run_app(single_command(main))
