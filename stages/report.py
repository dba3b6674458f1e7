"""DVC stage `report`: one row per round (test F1, pseudo-label P/R/F1, label flips) and the last
round's pseudo labels against gold, for `dvc plots`; the same as PNG/SVG figures; the pipeline's
few DVC metrics, headline first; and the page template that lets `dvc plots show` draw offline."""

import json
from pathlib import Path
from typing import Annotated

import typer

from glode.atomic import write_json
from glode.plots import write_figures, write_plots_template
from glode.steps.report import flip_rows, model_names, write_confusion, write_round_report, write_summary
from glode.stagecli import run_app, single_command


def main(
    params: Annotated[Path, typer.Option(help="params.yaml: its `models` (r0 and the rounds) are the report's rows.")] = Path("params.yaml"),
    metrics: Annotated[Path, typer.Option(help="Folder of per-round metrics (metrics/rN.json, metrics/denoise/rN.json).")] = Path("metrics"),
    out: Annotated[Path, typer.Option(help="Report JSON to write.")] = Path("reports/rounds.json"),
    summary: Annotated[Path, typer.Option(help="The DVC metrics to write: the last round's test and pseudo-label scores first, then each earlier model's.")] = Path("reports/metrics.json"),
    rounds: Annotated[Path, typer.Option(help="Folder of per-round label tables (rounds/rN/labels.parquet).")] = Path("rounds"),
    flips: Annotated[Path, typer.Option(help="Flip counts of the rounds that have them (all but r0) to write.")] = Path("reports/flips.json"),
    confusion: Annotated[Path, typer.Option(help="Confusion rows (gold, pseudo label) of the last round to write.")] = Path("reports/confusion.json"),
    figures: Annotated[Path, typer.Option(help="Folder to write the report's figures to (PNG and SVG).")] = Path("reports/figures"),
    page_template: Annotated[Path, typer.Option(help="HTML template with inline JavaScript for `dvc plots show` to write.")] = Path("reports/plots_template.html"),
) -> None:
    """Collect the per-round scores into one table and the headline metrics; write the last
    round's label confusion rows, the figures of both, and the offline page template."""
    rows = write_round_report(metrics, out, model_names(params))
    write_summary(rows, summary)
    for row in rows:
        f1 = row["test_f1"]
        pl = row["pseudo_label_f1"]
        typer.echo(f"{row['round']}: test F1 {f1 if f1 is None else round(f1, 4)}, pseudo-label F1 {pl if pl is None else round(pl, 4)}")
    write_json(flips, flip_rows(rows))
    name, n = write_confusion(rows, rounds, confusion)
    typer.echo(f"{confusion}: {n} span(s) of {name or 'no round'} where gold or pseudo label is an entity")
    written = write_figures(rows, json.loads(confusion.read_text(encoding="utf-8")), figures)
    typer.echo(f"{figures}: {', '.join(p.name for p in written)}")
    write_plots_template(page_template)


if __name__ == "__main__":
    run_app(single_command(main))
