"""DVC stage `denoise@rN`: global (prototype) and local (kNN) refinement of the round's labels."""

from pathlib import Path
from typing import Annotated

import typer

from glode.settings import DenoiseSettings, Features, Gate, Index, Projection, Prototype, PrototypeFrom, Start
from glode.stagecli import run_app, single_command
from glode.steps.denoise import denoise_round

# options that DVC fills from params.yaml, and their keys there
PARAMS = DenoiseSettings.option_keys()
_D = DenoiseSettings()


def main(
    round: Annotated[str, typer.Option(help="This round's name (rN); selects the EMA weight.")],
    pseudo: Annotated[Path, typer.Option(help="This round's pseudo_label output folder.")],
    prev_labels: Annotated[Path, typer.Option(help="Label table of the previous round.")],
    out: Annotated[Path, typer.Option(help="Refined label table to write.")],
    metrics: Annotated[Path, typer.Option(help="Statistics JSON to write.")],
    k: Annotated[int, typer.Option(help="Neighbours per span in the local view.")] = _D.k,
    o_keep_rate: Annotated[float, typer.Option(help="Share of O spans kept in the memory bank.")] = _D.o_keep_rate,
    local_scale: Annotated[float, typer.Option(help="Local thresholds = this x the class's mean count.")] = _D.local_scale,
    local_cap: Annotated[float, typer.Option(help="Upper bound of every local threshold, as a share of k (1: none; "
                                           "below 0.5 a span can be admitted to two classes).")] = _D.local_cap,
    m_start: Annotated[float, typer.Option(help="EMA weight of the old labels in the first updating round "
                                           "(--update-from; r1 by default).")] = _D.m_start,
    m_step: Annotated[float, typer.Option(help="How much the EMA weight drops per later round.")] = _D.m_step,
    m_min: Annotated[float, typer.Option(help="Lowest EMA weight.")] = _D.m_min,
    update_from: Annotated[int, typer.Option(help="First round whose denoising updates labels (earlier rounds carry "
                                             "them: m = 1); m-start is its weight.")] = _D.update_from,
    visits: Annotated[float, typer.Option(help="Update steps a label takes this round (weight m^visits; the "
                                          "reference updates a span at every visit to a batch).")] = _D.visits,
    prototype: Annotated[Prototype, typer.Option(help="'mean' (class mean) or 'ema' (the reference's momentum average).")] = Prototype(_D.prototype),
    momentum: Annotated[float, typer.Option(help="Momentum of the 'ema' prototypes.")] = _D.momentum,
    prototype_from: Annotated[PrototypeFrom, typer.Option(help="Prototypes from 'all' labelled spans (source gold + target "
                                                "pseudo labels) or from 'source' gold spans only.")] = PrototypeFrom(_D.prototype_from),
    use_global: Annotated[bool, typer.Option(help="Use the global (prototype) view.")] = _D.use_global,
    use_local: Annotated[bool, typer.Option(help="Use the local (neighbour) view.")] = _D.use_local,
    index: Annotated[Index, typer.Option(help="'exact', 'ivf', or 'auto' (IVF above auto-threshold bank entries).")] = Index(_D.index),
    auto_threshold: Annotated[int, typer.Option(help="Bank size above which 'auto' uses IVF.")] = _D.auto_threshold,
    nprobe: Annotated[int, typer.Option(help="IVF lists probed per query.")] = _D.nprobe,
    seed: Annotated[int, typer.Option(help="Seed of the O sample in the memory bank.")] = _D.seed,
    start: Annotated[Start, typer.Option(help="Labels to refine: 'model' (the previous model's fresh pseudo labels; with "
                                       "both views off: plain self-training) or 'labels' (the previous round's refined labels).")] = Start(_D.start),
    gate: Annotated[Gate, typer.Option(help="'none', or 'agree': a span's top class only changes to a class every "
                                      "view in use admits (sharpening updates still apply).")] = Gate(_D.gate),
    select: Annotated[float, typer.Option(help="Keep the most confident share of each predicted entity class as "
                                       "entity (1: all, off).")] = _D.select,
    select_rest: Annotated[float, typer.Option(help="What the other entity labels keep: rest x label + (1-rest) x O "
                                            "(0: plain O).")] = _D.select_rest,
    align: Annotated[float, typer.Option(help="With start 'model': reweight the entity classes towards the source's "
                                      "class shares, (source share / predicted share)^align, and decode again (0: off).")] = _D.align,
    dim: Annotated[int, typer.Option(help="(read by pseudo_label) dimension of the span vectors.")] = _D.dim,
    projection: Annotated[Projection, typer.Option(help="(read by pseudo_label) how span vectors are reduced to dim.")] = Projection(_D.projection),
    features: Annotated[Features, typer.Option(help="(read by pseudo_label) where span vectors come from.")] = Features(_D.features),
) -> None:
    """Write labels.parquet (refined soft labels, both views' scores and decisions) and statistics."""
    s = denoise_round(round, pseudo, prev_labels, out, metrics, DenoiseSettings.from_options(locals()))
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
