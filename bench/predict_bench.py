"""Prediction throughput: `glode predict`'s path against `transformers.pipeline("token-classification")`
on the same encoder and the same sentences (issue 7; goal: glode >= 2x sentences per second).

    python bench/predict_bench.py --model models/r2 --encoder encoder \\
        --test tables/target_test.parquet --sentences 1000 --repeats 5 --threads 2

* glode: `glode.predict.predict_items` (what `glode predict` runs after reading its input):
  sub-token encoding, span scoring batched by length, greedy decoding, spans with scores.
* reference: a Hugging Face `AutoModelForTokenClassification` on the same encoder folder, run by
  `pipeline("token-classification", aggregation_strategy="simple")` on the same sentences
  (words joined by spaces), once as the pipeline runs by default (one sentence per forward
  pass) and once with `batch_size` equal to glode's. The reference model is `--reference` if
  given (e.g. saved by `bench/hf_reference.py --out-model`), else an untrained classification
  head on the encoder: throughput does not depend on the weights (same architecture, same
  shapes; only the aggregation step sees the labels, and it runs either way).

Variants run interleaved (the order rotates every repeat) in one process with the same torch
thread count; model loading is excluded; medians of wall time and of process CPU time are
reported (on a shared CPU the CPU time is the steadier measure; use --threads 1 there: with
several threads, OpenMP workers that lose their core turn every small matrix product into a
wait, which punishes unbatched inference far more than batched). Results: bench/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_sentences(path: Path, n: int) -> list[list[str]]:
    if path.suffix == ".parquet":
        from glode.tables import read_sentences

        sents = [s.tokens for s in read_sentences(path)]
    else:
        from glode.conll import read_conll

        sents = [s.tokens for s in read_conll(path)]
    return sents[:n] if n else sents


def reference_dir(encoder: Path, reference: Path | None, labels: list[str], work: Path) -> tuple[Path, str]:
    if reference is not None:
        return reference, "given"
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    bio = ["O", *[f"{p}-{t}" for t in labels for p in ("B", "I")]]
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(
        encoder, num_labels=len(bio), id2label=dict(enumerate(bio)), label2id={t: i for i, t in enumerate(bio)},
        local_files_only=True)
    out = work / "hf-untrained"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(encoder, local_files_only=True).save_pretrained(out)
    return out, "untrained head on the encoder"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/r2"), help="glode model folder")
    ap.add_argument("--encoder", type=Path, default=Path("encoder"), help="the encoder folder both models use")
    ap.add_argument("--reference", type=Path, help="a saved AutoModelForTokenClassification folder (default: untrained head)")
    ap.add_argument("--test", type=Path, default=Path("tables/target_test.parquet"), help="sentences table or CoNLL file")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/predict.json")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    args = ap.parse_args(argv)

    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from glode.atomic import atomic_path
    from glode.output_formats import TaggedSentence
    from glode.predict import load_predictor, predict_items

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    sentences = load_sentences(args.test, args.sentences)
    texts = [" ".join(s) for s in sentences]
    model, tok, enc = load_predictor(args.model, args.encoder)
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir, ref_kind = reference_dir(args.encoder, args.reference, model.config.entity_types, Path(tmp))
        pipe = pipeline("token-classification", model=str(ref_dir), aggregation_strategy="simple", device=-1)

        def run_glode():
            items = [TaggedSentence(list(s), i) for i, s in enumerate(sentences)]
            predict_items(model, tok, enc, items, batch_size=args.batch_size, progress=False)
            return sum(len(it.spans) for it in items)

        def run_hf(batch_size):
            def go():
                with torch.inference_mode():
                    out = pipe(texts, batch_size=batch_size)
                return sum(len(o) for o in out)
            return go

        variants = {"glode": run_glode, "hf_pipeline": run_hf(1), f"hf_pipeline_batch{args.batch_size}": run_hf(args.batch_size)}
        names = list(variants)
        times: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        entities: dict[str, int] = {}
        full = sentences
        sentences, texts = full[:32], [" ".join(s) for s in full[:32]]
        for name in names:  # warm-up on a few sentences (first-call allocations, lazy imports)
            variants[name]()
        sentences, texts = full, [" ".join(s) for s in full]
        for rep in range(args.repeats):
            order = names[rep % len(names):] + names[: rep % len(names)]
            for name in order:
                t0, c0 = time.perf_counter(), time.process_time()
                entities[name] = variants[name]()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                print(f"repeat {rep + 1}/{args.repeats} {name}: {times[name][-1]:.2f} s wall, "
                      f"{cpu[name][-1]:.2f} s CPU", file=sys.stderr)

    n = len(sentences)
    result = {
        "sentences": n,
        "words": int(sum(len(s) for s in sentences)),
        "test": str(args.test),
        "model": str(args.model),
        "reference": ref_kind if args.reference is None else str(args.reference),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "note": args.note,
        "variants": {
            name: {
                "median_seconds": round(statistics.median(ts), 3),
                "sentences_per_second": round(n / statistics.median(ts), 1),
                "median_cpu_seconds": round(statistics.median(cpu[name]), 3),
                "sentences_per_cpu_second": round(n / statistics.median(cpu[name]), 1),
                "seconds": [round(t, 3) for t in ts],
                "cpu_seconds": [round(t, 3) for t in cpu[name]],
                "entities": entities[name],
            }
            for name, ts in times.items()
        },
    }
    g = result["variants"]["glode"]["sentences_per_second"]
    gc = result["variants"]["glode"]["sentences_per_cpu_second"]
    result["speedup"] = {name: round(g / v["sentences_per_second"], 2) for name, v in result["variants"].items() if name != "glode"}
    result["speedup_cpu_time"] = {name: round(gc / v["sentences_per_cpu_second"], 2)
                                  for name, v in result["variants"].items() if name != "glode"}
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, v in result["variants"].items():
        print(f"{name:>24}: {v['sentences_per_second']:7.1f} sentences/s wall (median {v['median_seconds']} s), "
              f"{v['sentences_per_cpu_second']:7.1f} per CPU second")
    print(f"glode speed-up, wall: {result['speedup']}; CPU time: {result['speedup_cpu_time']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
