"""DVC stage `report`: one row per round (test F1, pseudo-label P/R/F1, label flips) and the last
round's pseudo labels against gold, for `dvc plots`."""

from pathlib import Path
from typing import Annotated

import typer

from glode.report import write_confusion, write_round_report
from glode.stagecli import run_app, single_command


def main(
    metrics: Annotated[Path, typer.Option(help="Folder of per-round metrics (metrics/rN.json, metrics/denoise/rN.json).")] = Path("metrics"),
    out: Annotated[Path, typer.Option(help="Report JSON to write.")] = Path("reports/rounds.json"),
    rounds: Annotated[Path, typer.Option(help="Folder of per-round label tables (rounds/rN/labels.parquet).")] = Path("rounds"),
    confusion: Annotated[Path, typer.Option(help="Confusion rows (gold, pseudo label) of the last round to write.")] = Path("reports/confusion.json"),
) -> None:
    """Collect the per-round scores into one table; write the last round's label confusion rows."""
    rows = write_round_report(metrics, out)
    for row in rows:
        f1 = row["test_f1"]
        pl = row["pseudo_label_f1"]
        typer.echo(f"{row['round']}: test F1 {f1 if f1 is None else round(f1, 4)}, pseudo-label F1 {pl if pl is None else round(pl, 4)}")
    name, n = write_confusion(rows, rounds, confusion)
    typer.echo(f"{confusion}: {n} span(s) of {name or 'no round'} where gold or pseudo label is an entity")


if __name__ == "__main__":
    run_app(single_command(main))
