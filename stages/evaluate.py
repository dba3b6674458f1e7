"""DVC stage `evaluate@rN`: entity scores of a round's model on the target test set."""

from pathlib import Path
from typing import Annotated

import typer

from glode.pipeline import evaluate_model
from glode.params import check_options
from glode.stagecli import run_app, single_command

# options that DVC fills from params.yaml, and their keys there
PARAMS = {"batch_size": "evaluate.batch-size"}


def main(
    model: Annotated[Path, typer.Option(help="Model folder (models/rN).")],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON to write (metrics/rN.json).")],
    test: Annotated[Path, typer.Option(help="Prepared target test table.")] = Path("tables/target_test.parquet"),
    batch_size: Annotated[int, typer.Option(help="Sentences per batch.")] = 64,
) -> None:
    """Write seqeval strict-IOB2 micro P/R/F1, per-type scores and the paper's span F1."""
    check_options(locals(), PARAMS)
    s = evaluate_model(model, test, metrics, batch_size)
    typer.echo(f"{model}: F1 {s['f1']:.4f} (P {s['precision']:.4f}, R {s['recall']:.4f}); span F1 {s['span']['f1']:.4f}")


if __name__ == "__main__":
    run_app(single_command(main))
