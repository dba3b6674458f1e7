"""DVC stage `denoise@rN`: global (prototype) and local (kNN) refinement of the round's labels."""

from pathlib import Path
from typing import Annotated

import typer

from glode.settings import DenoiseSettings
from glode.stagecli import options, run_app, single_command, with_settings
from glode.steps.denoise import denoise_round


@with_settings
def main(
    round: Annotated[str, typer.Option(help="This round's name (rN); selects the EMA weight.")],
    pseudo: Annotated[Path, typer.Option(help="This round's pseudo_label output folder.")],
    prev_labels: Annotated[Path, typer.Option(help="Label table of the previous round.")],
    out: Annotated[Path, typer.Option(help="Refined label table to write.")],
    metrics: Annotated[Path, typer.Option(help="Statistics JSON to write.")],
    *,
    # DVC passes the whole denoise section; the span vectors' keys are pseudo_label's
    settings: Annotated[DenoiseSettings, options(hidden=("dim", "projection", "features"))],
) -> None:
    """Write labels.parquet (refined soft labels, both views' scores and decisions) and statistics."""
    s = denoise_round(round, pseudo, prev_labels, out, metrics, settings)
    ch = s["changed"]
    msg = (f"{out}: m={s['m']:.3f}, {ch['total']} changed (O->entity {ch['o_to_entity']}, entity->O {ch['entity_to_o']}, "
           f"swaps {ch['type_swap']}; {ch['refused_by_gate']} refused by the gate)")
    if "align" in s:
        a = s["align"]
        msg += f"; aligned to the source's class shares: entities {a['entities_before']} -> {a['entities_after']}"
    if s["select"]["demoted"]:
        msg += f"; {s['select']['demoted']} entity labels demoted by select"
    msg += f"; soft mass moved {s['soft_change']['mass_moved']:.1f} over {s['soft_change']['spans_moved']} spans"
    if "pseudo_label" in s:
        pl = s["pseudo_label"]
        msg += (f"; pseudo-label F1 {pl['before']['f1']:.4f} -> {pl['after']['f1']:.4f}, "
                f"soft F1 {pl['soft_before']['f1']:.4f} -> {pl['soft_after']['f1']:.4f}")
    typer.echo(msg)


if __name__ == "__main__":
    run_app(single_command(main))
