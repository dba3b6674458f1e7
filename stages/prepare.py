"""DVC stage `prepare`: validate the CoNLL inputs and write parquet sentence tables."""

from pathlib import Path
from typing import Annotated

import typer

from glode.settings import DataSettings
from glode.stagecli import run_app, single_command, with_settings
from glode.steps.prepare import prepare_tables


@with_settings
def main(
    target_unlabelled: Annotated[Path, typer.Option(help="Target-language corpus; its tags are used only for diagnostics.")],
    target_test: Annotated[Path, typer.Option(help="Labelled target-language test file (CoNLL).")],
    out: Annotated[Path, typer.Option(help="Output folder for the parquet tables.")] = Path("tables"),
    *,
    data: DataSettings,
) -> None:
    """Read, validate and normalise (IOB1/BIO2 to BIO2) the four corpora into parquet tables."""
    files = {
        "source_train": Path(data.source_train),
        "source_dev": Path(data.source_dev),
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
