"""Protocol x3: an exploration at v3's sizes and settings, one seed, the checkout's code (or
--commit's); never part of the v3 table. Cells in `bench/results/explore-v3/`.

    python bench/results.py --protocol x3 run --workdir ../bench-explore --only de:plain:0 --only de:paper:0
    python bench/results.py --protocol x3 render
"""

from __future__ import annotations

from results_harness import NO_DENOISING, ROOT, Protocol, render_exploration
from results_v3 import V3_EPOCHS, V3_ROUNDS, V3_SIZES, V3_VARIANTS

# candidate denoising settings picked from `bench/denoise_explore.py`'s replays, beside v3's variants
X3_VARIANTS = {
    "select-0.9": ("per-class confidence selection alone: keep the top 90% of each entity class",
                   {**NO_DENOISING, "denoise.select": 0.9}),
    "local-only": ("the default's gate with the local view only", {"denoise.use-global": False}),
    "proto-source": ("the default with prototypes from source gold only", {"denoise.prototype-from": "source"}),
    "plain-mlm-corpus": ("plain self-training with the MLM softmax over the target text's own sub-tokens "
                         "(`train.mlm-vocab: corpus`, r0 included): issue 21's quality check",
                         {**NO_DENOISING, "train.mlm-vocab": "corpus"}),
}

PROTOCOL = Protocol("x3", ROOT / "bench" / "results" / "explore-v3", "v3", {**V3_VARIANTS, **X3_VARIANTS}, V3_SIZES,
                    V3_EPOCHS, V3_ROUNDS, render=render_exploration, explore=True)
