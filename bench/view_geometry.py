"""Synthetic checks of two findings of issue 19 about the denoising views (docs/METHOD.md §6).

* ``projection``: span features like a trained encoder's (a large component every span shares,
  a small offset per class, 96% O) reduced to 16 dimensions by each ``denoise.projection``.
  For each: how often the O prototype is the nearest one for O spans (and an entity span's own
  class prototype for entity spans), the O threshold against
  the lowest entity threshold, and the share of spans the global view admits nothing for.
  Centring (``pca``) reproduces the committed default run's signature (tau_O near 0).
* ``local``: unit-vector clusters (96% O) at two noise levels, target corpora of 20k and 100k
  spans (a memory bank of about 2k and 10k entries at o_keep_rate 0.03) and k = 30 or 300.
  For each: the local thresholds as a share of k, and how many spans the local view admits to
  two classes or more, without a bound and with ``local_cap`` 0.4. It shows what sets the
  thresholds: the purity of the neighbourhoods, not the bank size (a larger bank with the same
  k gives purer neighbourhoods and higher thresholds).

Usage: ``python bench/view_geometry.py`` (about a minute on 2 cores; writes
bench/results/view_geometry.json, or ``--out``, and prints both tables).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glode.denoising.projection import reduce_dim  # noqa: E402
from glode.denoising.update import DenoiseInput, denoise  # noqa: E402
from glode.denoising.views import compute_prototypes, global_view  # noqa: E402
from glode.params import SCHEMA  # noqa: E402
from glode.settings import DenoiseSettings, IndexOptions  # noqa: E402
from tests.synthetic import mostly_o_features  # noqa: E402

P_CLASSES = (0.96, 0.013, 0.013, 0.014)


def projection_rows() -> list[dict]:
    rows = []
    for noise in (0.2, 0.4):
        X, y = mostly_o_features(noise=noise)
        for projection in SCHEMA["denoise.projection"].choices:
            (Q,) = reduce_dim([X], 16, seed=0, projection=projection)
            protos, has = compute_prototypes(Q[:0], y[:0], Q, y, 4, method="mean")
            g, tau, G = global_view(Q, y, protos, has)
            entity = y != 0
            rows.append({"noise": noise, "projection": projection,
                         "o_nearest_for_o_spans": float((g[y == 0].argmax(1) == 0).mean()),
                         "own_nearest_for_entity_spans": float((g[entity].argmax(1) == y[entity]).mean()),
                         "tau_o": float(tau[0]), "tau_entity_min": float(tau[1:].min()),
                         "global_empty_share": float((G.sum(1) == 0).mean())})
    return rows


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def local_rows() -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((4, 32)))
    for noise in (0.3, 0.6):
        for n in (20000, 100000):
            y = rng.choice(4, size=n + n // 2, p=P_CLASSES)
            X = unit(centres[y] + noise * rng.standard_normal((len(y), 32)))
            Q, yq, S, ys = X[:n], y[:n], X[n:], y[n:]
            for k in (30, 300):
                for cap in (1.0, 0.4):
                    settings = DenoiseSettings(k=k, use_global=False, local_cap=cap, index="exact", gate="none")
                    r = denoise(DenoiseInput(Q, np.eye(4, dtype=np.float32)[yq], S, ys), settings, 0.5, IndexOptions())
                    sizes = r.L.sum(1)
                    rows.append({"noise": noise, "target_spans": n, "bank_size": r.bank_size, "k": k,
                                 "local_cap": cap, "tau_over_k": [round(float(t) / k, 3) for t in r.tau_local],
                                 "two_or_more_share": float((sizes >= 2).mean())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "view_geometry.json",
                    help="where the JSON goes")
    path = ap.parse_args().out
    out = {"projection": projection_rows(), "local": local_rows()}
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print("| noise | projection | O nearest for O spans | own class nearest for entity spans | tau_O | lowest entity tau "
          "| global view empty |")
    print("|---|---|---|---|---|---|---|")
    for r in out["projection"]:
        print(f"| {r['noise']} | {r['projection']} | {r['o_nearest_for_o_spans']:.4f} | "
              f"{r['own_nearest_for_entity_spans']:.4f} | {r['tau_o']:.3f} | "
              f"{r['tau_entity_min']:.3f} | {r['global_empty_share']:.3f} |")
    print()
    print("| noise | target spans | bank | k | local_cap | thresholds / k (O, PER, LOC, ORG) | spans admitted to >= 2 |")
    print("|---|---|---|---|---|---|---|")
    for r in out["local"]:
        print(f"| {r['noise']} | {r['target_spans']} | {r['bank_size']} | {r['k']} | {r['local_cap']} | "
              f"{', '.join(f'{t:.2f}' for t in r['tau_over_k'])} | {r['two_or_more_share']:.4f} |")


if __name__ == "__main__":
    main()
