"""DVC stage `report`: one row per round (test F1, pseudo-label F1, label flips) for `dvc plots`."""

from pathlib import Path
from typing import Annotated

import typer

from glode.report import write_round_report
from glode.stagecli import run_app, single_command


def main(
    metrics: Annotated[Path, typer.Option(help="Folder of per-round metrics (metrics/rN.json, metrics/denoise/rN.json).")] = Path("metrics"),
    out: Annotated[Path, typer.Option(help="Report JSON to write.")] = Path("reports/rounds.json"),
) -> None:
    """Collect the per-round scores into one table."""
    for row in write_round_report(metrics, out):
        f1 = row["test_f1"]
        pl = row["pseudo_label_f1"]
        typer.echo(f"{row['round']}: test F1 {f1 if f1 is None else round(f1, 4)}, pseudo-label F1 {pl if pl is None else round(pl, 4)}")


if __name__ == "__main__":
    run_app(single_command(main))
