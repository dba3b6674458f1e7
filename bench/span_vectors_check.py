"""The labels that denoising makes from two sets of span vectors, compared (issue 38: float16
storage and the streamed `pseudo_label` stage checked against float32 labels).

    python bench/span_vectors_check.py A            # A's vectors in float32 against float16
    python bench/span_vectors_check.py A B          # pseudo_label folder A against folder B

A and B are `rounds/rN/pseudo` folders of the same target corpus (e.g. one written before and one
after a change of the stage). Each is denoised once with GLoDe's views (`glode preset glode`:
both views, fresh predictions, glode's defaults otherwise) at m = 0.8, and the script prints the
pseudo-label F1 against the corpus's gold and how many spans' labels differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glode.denoising.update import DenoiseInput, denoise  # noqa: E402
from glode.label_quality import span_prf  # noqa: E402
from glode.label_table import class_ids, initial_soft_labels  # noqa: E402
from glode.pseudo_folder import SOURCE_LABELS, SOURCE_REPS, TARGET_REPS, load_array, read_spans  # noqa: E402
from glode.settings import DenoiseSettings, IndexOptions  # noqa: E402


def denoised(folder: Path, dtype=None):
    spans, classes = read_spans(folder, text=False)
    Q, S = load_array(folder / TARGET_REPS), load_array(folder / SOURCE_REPS)
    if dtype is not None:
        Q, S = Q.astype(dtype), S.astype(dtype)
    Y = initial_soft_labels(spans, classes)
    res = denoise(DenoiseInput(Q, Y, S, load_array(folder / SOURCE_LABELS)),
                  DenoiseSettings(use_global=True, use_local=True, start="model"), 0.8, IndexOptions())
    gold = class_ids(spans.gold.to_numpy(dtype=object), classes)
    f1 = span_prf(res.y_new, gold)["f1"] if (gold >= 0).any() else float("nan")
    print(f"{folder} ({Q.dtype}): {len(spans):,} spans, pseudo-label F1 {100 * f1:.2f}, "
          f"{int((res.y_new > 0).sum()):,} entity spans")
    return spans, Y, res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", type=Path, nargs="+", help="one or two pseudo_label folders")
    args = ap.parse_args(argv)
    if len(args.folders) == 1:
        (sa, Ya, a), (sb, Yb, b) = denoised(args.folders[0], np.float32), denoised(args.folders[0], np.float16)
    else:
        (sa, Ya, a), (sb, Yb, b) = (denoised(f) for f in args.folders[:2])
        key = ["sentence_id", "start", "end"]
        if not sa[key].equals(sb[key]):
            raise SystemExit("the two folders hold different span tables; give folders of the same corpus")
        print(f"span probabilities: largest difference {np.abs(Ya - Yb).max():.2g}")
    dY = np.abs(a.Y_new - b.Y_new).max(axis=1)
    print(f"denoised argmax differs on {int((a.y_new != b.y_new).sum()):,} of {len(dY):,} spans; "
          f"{int((dY > 1e-3).sum()):,} rows' soft labels differ by more than 1e-3 (largest {dY.max():.2g}); "
          f"admitted sets equal: global {100 * (a.G == b.G).all(1).mean():.3f}%, local {100 * (a.L == b.L).all(1).mean():.3f}%")


if __name__ == "__main__":
    main()
