"""The local view's kNN search in corpus order against the order of each query's nearest IVF list
(`IndexOptions.search_window`), side by side in one process on a real pseudo_label folder
(issue 38: denoise's time per span grew with the corpus).

    python bench/knn_order.py ../bench-work/scale-297f98a/12000/rounds/r1/pseudo \\
        ../bench-work/scale-297f98a/48000/rounds/r1/pseudo --spans 400000 --repeats 3 \\
        --out bench/results/knn_order.json

Per folder: the memory bank and IVF index the denoise stage builds (glode's defaults: k 300,
nprobe 32, lists of 64 bank entries), then `neighbour_counts` over the first `--spans` target spans,
once per order and repeat, the orders alternating. Recorded: CPU and wall seconds per run, their
medians, the ratio, and whether the counts are identical (they must be).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from glode.denoising.views import build_bank, build_index, neighbour_counts  # noqa: E402
from glode.label_table import initial_soft_labels  # noqa: E402
from glode.pseudo_folder import SOURCE_LABELS, SOURCE_REPS, TARGET_REPS, VectorFile, load_array, read_spans  # noqa: E402
from glode.settings import DenoiseSettings, IndexOptions  # noqa: E402


def measure(folder: Path, spans_limit: int, repeats: int) -> dict:
    spans, classes = read_spans(folder, text=False)
    Q = VectorFile(folder / TARGET_REPS)
    S, s_labels = load_array(folder / SOURCE_REPS), load_array(folder / SOURCE_LABELS)
    y_hat = initial_soft_labels(spans, classes).argmax(1)
    settings, options = DenoiseSettings(), IndexOptions()
    bank = build_bank(S, s_labels, Q, y_hat, o_keep_rate=settings.o_keep_rate, seed=settings.seed)
    index = build_index(bank.vectors, "ivf", nprobe=settings.nprobe, seed=settings.seed, options=options)
    n = min(spans_limit, len(Q)) if spans_limit else len(Q)
    queries = np.asarray(Q[0:n])  # read once, so that both orders search what is in memory
    runs: dict[str, list[dict]] = {"corpus": [], "list": []}
    results = {}
    for r in range(repeats):
        for name in (("corpus", "list") if r % 2 == 0 else ("list", "corpus")):
            window = None if name == "corpus" else options.search_window
            c0, t0 = time.process_time(), time.perf_counter()
            counts, missing = neighbour_counts(queries, bank, index, int(settings.k), len(classes),
                                               chunk_size=options.chunk_size, window=window)
            runs[name].append({"cpu_s": round(time.process_time() - c0, 2), "wall_s": round(time.perf_counter() - t0, 2)})
            results[name] = (counts, missing)
            print(f"{folder} {name} order: {runs[name][-1]}", flush=True)
    med = {name: {k: statistics.median(x[k] for x in rs) for k in ("cpu_s", "wall_s")} for name, rs in runs.items()}
    identical = bool(np.array_equal(results["corpus"][0], results["list"][0]) and results["corpus"][1] == results["list"][1])
    return {"folder": str(folder), "spans": n, "corpus_spans": len(Q), "bank": int(bank.size), "nlist": int(index.nlist),
            "runs": runs, "median": med, "list_over_corpus_cpu": round(med["list"]["cpu_s"] / med["corpus"]["cpu_s"], 3),
            "list_over_corpus_wall": round(med["list"]["wall_s"] / med["corpus"]["wall_s"], 3), "identical": identical}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", type=Path, nargs="+", help="rounds/rN/pseudo folders")
    ap.add_argument("--spans", type=int, default=400_000, help="target spans searched (0: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, help="JSON to write")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    cells = [measure(f, args.spans, args.repeats) for f in args.folders]
    for c in cells:
        print(f"{c['folder']}: bank {c['bank']:,}, {c['nlist']:,} lists, {c['spans']:,} queries: list order / corpus order "
              f"CPU {c['list_over_corpus_cpu']:.2f}x, wall {c['list_over_corpus_wall']:.2f}x; identical counts: {c['identical']}")
    if args.out:
        out = {"command": "python bench/knn_order.py " + " ".join(sys.argv[1:]), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "cpus": os.cpu_count(), "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2), "cells": cells}
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
