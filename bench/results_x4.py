"""Protocol x4 (issue 36): an exploration at v3's sizes but the README's 3 epochs, one seed, the
checkout's code (or --commit's): glode's soft cross-entropy against the reference's target loss
(docs/METHOD.md §3), with and without the views. Cells in `bench/results/explore-v4/`, work
folders in `../bench-work/x4/`.

    python bench/results.py --protocol x4 run --only ar:zeroshot:0 --only ar:plain-ce:0 --only ar:views-ce:0
    python bench/results.py --protocol x4 render
"""

from __future__ import annotations

from results_harness import NO_DENOISING, ROOT, Protocol, render_exploration
from results_v3 import V3_ROUNDS, V3_SIZES, V3_VARIANTS

from glode.presets import PRESETS

X4_EPOCHS = 3  # train.epochs of r0 and the round: the README's setting
# each variant names its views explicitly, whatever the default
VIEWS = dict(PRESETS["glode"].values)
REFERENCE_LOSS = {"retrain.target-loss": "reference"}
NO_RELABELLING = {"denoise.m-start": 1.0, "denoise.m-step": 0.0, "denoise.m-min": 1.0}  # the views' update keeps every label
X4_VARIANTS = {
    "plain-ce": ("plain self-training, soft cross-entropy on the target labels", {**NO_DENOISING}),
    "plain-ref": ("plain self-training, the reference's target loss", {**NO_DENOISING, **REFERENCE_LOSS}),
    "views-ce": ("the global and local views (glode preset glode), soft cross-entropy", {**VIEWS}),
    "views-ref": ("the global and local views (glode preset glode), the reference's target loss",
                  {**VIEWS, **REFERENCE_LOSS}),
    "views-harden": ("the views, soft cross-entropy with O-topped labels of entity mass <= 0.35 hardened to O "
                     "(retrain.harden-o: beyond the paper, the leak stopped without the reference's loss)",
                     {**VIEWS, "retrain.harden-o": 0.35}),
    "weights-ce": ("the views as per-span loss weights instead of relabelling: the local view's neighbour agreement "
                   "weighs each pseudo entity (retrain.span-weights: neighbours), labels kept (m = 1), soft "
                   "cross-entropy", {**VIEWS, **NO_RELABELLING, "retrain.span-weights": "neighbours"}),
    "views-weights-ce": ("the views relabel and weigh (retrain.span-weights: neighbours), soft cross-entropy",
                         {**VIEWS, "retrain.span-weights": "neighbours"}),
}

PROTOCOL = Protocol("x4", ROOT / "bench" / "results" / "explore-v4", "x4", {**V3_VARIANTS, **X4_VARIANTS}, V3_SIZES,
                    X4_EPOCHS, V3_ROUNDS, render=render_exploration, explore=True)
