"""DVC stage `denoise@rN`: global (prototype) and local (kNN) refinement of the round's labels."""

from pathlib import Path
from typing import Annotated

import typer

from glode.selftrain import denoise_round
from glode.params import check_options, section_keys
from glode.stagecli import run_app, single_command

# options that DVC fills from params.yaml, and their keys there
PARAMS = {"k": "k", **section_keys(
    "denoise", "o_keep_rate", "local_scale", "m_start", "m_step", "m_min", "visits", "prototype", "momentum", "use_global",
    "use_local", "index", "auto_threshold", "nprobe", "seed", "start", "gate", "dim", "local_cap", "prototype_from",
    "select", "select_rest", "projection", "features",
)}


def main(
    round: Annotated[str, typer.Option(help="This round's name (rN); selects the EMA weight.")],
    pseudo: Annotated[Path, typer.Option(help="This round's pseudo_label output folder.")],
    prev_labels: Annotated[Path, typer.Option(help="Label table of the previous round.")],
    out: Annotated[Path, typer.Option(help="Refined label table to write.")],
    metrics: Annotated[Path, typer.Option(help="Statistics JSON to write.")],
    k: Annotated[int, typer.Option(help="Neighbours per span in the local view.")] = 300,
    o_keep_rate: Annotated[float, typer.Option(help="Share of O spans kept in the memory bank.")] = 0.03,
    local_scale: Annotated[float, typer.Option(help="Local thresholds = this x the class's mean count.")] = 0.9,
    local_cap: Annotated[float, typer.Option(help="Upper bound of every local threshold, as a share of k (1: none; "
                                           "below 0.5 a span can be admitted to two classes).")] = 1.0,
    m_start: Annotated[float, typer.Option(help="EMA weight of the old labels in round r1.")] = 0.8,
    m_step: Annotated[float, typer.Option(help="How much the EMA weight drops per later round.")] = 0.1,
    m_min: Annotated[float, typer.Option(help="Lowest EMA weight.")] = 0.5,
    visits: Annotated[float, typer.Option(help="Update steps a label takes this round (weight m^visits; the "
                                          "reference updates a span at every visit to a batch).")] = 1.0,
    prototype: Annotated[str, typer.Option(help="'mean' (class mean) or 'ema' (the reference's momentum average).")] = "mean",
    momentum: Annotated[float, typer.Option(help="Momentum of the 'ema' prototypes.")] = 0.99,
    prototype_from: Annotated[str, typer.Option(help="Prototypes from 'all' labelled spans (source gold + target "
                                                "pseudo labels) or from 'source' gold spans only.")] = "all",
    use_global: Annotated[bool, typer.Option(help="Use the global (prototype) view.")] = True,
    use_local: Annotated[bool, typer.Option(help="Use the local (neighbour) view.")] = True,
    index: Annotated[str, typer.Option(help="'exact', 'ivf', or 'auto' (IVF above auto-threshold bank entries).")] = "auto",
    auto_threshold: Annotated[int, typer.Option(help="Bank size above which 'auto' uses IVF.")] = 25000,
    nprobe: Annotated[int, typer.Option(help="IVF lists probed per query.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the O sample in the memory bank.")] = 0,
    start: Annotated[str, typer.Option(help="Labels to refine: 'model' (the previous model's fresh pseudo labels; with "
                                       "both views off: plain self-training) or 'labels' (the previous round's refined labels).")] = "model",
    gate: Annotated[str, typer.Option(help="'none', or 'agree': a span's top class only changes to a class every "
                                      "view in use admits (sharpening updates still apply).")] = "agree",
    select: Annotated[float, typer.Option(help="Keep the most confident share of each predicted entity class as "
                                       "entity (1: all, off).")] = 1.0,
    select_rest: Annotated[float, typer.Option(help="What the other entity labels keep: rest x label + (1-rest) x O "
                                            "(0: plain O).")] = 0.0,
    dim: Annotated[int, typer.Option(help="(read by pseudo_label) dimension of the span vectors.")] = 128,
    projection: Annotated[str, typer.Option(help="(read by pseudo_label) how span vectors are reduced to dim.")] = "svd",
    features: Annotated[str, typer.Option(help="(read by pseudo_label) where span vectors come from.")] = "model",
) -> None:
    """Write labels.parquet (refined soft labels, both views' scores and decisions) and statistics."""
    check_options(locals(), PARAMS)
    s = denoise_round(
        round, pseudo, prev_labels, out, metrics, k=k, o_keep_rate=o_keep_rate, local_scale=local_scale,
        m_start=m_start, m_step=m_step, m_min=m_min, visits=visits, prototype=prototype, momentum=momentum,
        use_global=use_global, use_local=use_local, index=index, auto_threshold=auto_threshold,
        nprobe=nprobe, seed=seed, start=start, gate=gate, local_cap=local_cap,
        select=select, select_rest=select_rest, prototype_from=prototype_from,
    )
    ch = s["changed"]
    msg = (f"{out}: m={s['m']:.3f}, {ch['total']} changed (O->entity {ch['o_to_entity']}, entity->O {ch['entity_to_o']}, "
           f"swaps {ch['type_swap']}; {ch['refused_by_gate']} refused by the gate)")
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
