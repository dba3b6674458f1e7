"""Prediction throughput: `glode predict`'s path against `transformers.pipeline("token-classification")`
on the same encoder and the same sentences (issue 7; goal: glode >= 2x sentences per second;
issue 38: >= 4x the batched pipeline at <= 0.3 F1 loss, with `--precision`).

    python bench/predict_bench.py --model models/r2 --encoder encoder \\
        --test tables/target_test.parquet --sentences 1000 --repeats 5 --threads 2

* glode: `glode.predict.predict_items` (what `glode predict` runs after reading its input):
  sub-token encoding, span scoring batched by length, greedy decoding, spans with scores; once
  per `--precisions` (`glode predict --precision`, i.e. `evaluate.precision`: fp32; bf16 under
  autocast; int8, the encoder's linear layers dynamically quantised), each on its own copy of
  the model placed by `glode.device.scoring_device`. With a labelled `--test` table each
  precision's strict F1 on these sentences is recorded too (the same sentences every repeat:
  the last repeat's output), and its difference to fp32.
* reference: a Hugging Face `AutoModelForTokenClassification` on the same encoder folder, run by
  `pipeline("token-classification", aggregation_strategy="simple")` on the same sentences
  (words joined by spaces), once as the pipeline runs by default (one sentence per forward
  pass; `--no-hf-batch-1` leaves it out) and once with `batch_size` equal to glode's, and with
  `--hf-bf16` also batched on a bfloat16 copy of the model (`dtype=torch.bfloat16`, the
  pipeline's own way to a reduced precision). The reference model is `--reference` if
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
sys.path.insert(0, str(ROOT / "bench"))
from benchkit import cpu_flags  # noqa: E402  (a sibling script)


def load_sentences(path: Path, n: int) -> list[list[str]]:
    if path.suffix == ".parquet":
        from glode.tables import read_sentences

        sents = [s.tokens for s in read_sentences(path)]
    else:
        from glode.conll import read_conll

        sents = [s.tokens for s in read_conll(path)]
    return sents[:n] if n else sents


def load_tags(path: Path, n: int) -> list[list[str]] | None:
    """The gold tags of the sentences (None where the table or file has none)."""
    if path.suffix == ".parquet":
        from glode.tables import read_sentences

        tags = [s.tags for s in read_sentences(path)]
    else:
        from glode.conll import read_conll

        tags = [s.tags for s in read_conll(path)]
    tags = tags[:n] if n else tags
    return tags if any(t != "O" for s in tags for t in s) else None



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
    ap.add_argument("--precisions", nargs="+", default=["fp32"], choices=("fp32", "bf16", "int8"),
                    help="glode's variants: glode predict --precision (evaluate.precision)")
    ap.add_argument("--hf-batch-1", action=argparse.BooleanOptionalAction, default=True,
                    help="also the pipeline as it runs by default, one sentence per forward pass (slow)")
    ap.add_argument("--hf-bf16", action=argparse.BooleanOptionalAction, default=False,
                    help="also the batched pipeline on a bfloat16 copy of the reference model")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/predict.json")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    args = ap.parse_args(argv)

    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from glode.atomic import atomic_path
    from glode.device import scoring_device
    from glode.output_formats import TaggedSentence
    from glode.predict import load_predictor, predict_items
    from glode.settings import DeviceSettings

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    sentences = load_sentences(args.test, args.sentences)
    gold = load_tags(args.test, args.sentences)
    texts = [" ".join(s) for s in sentences]
    predictors = {}  # one model per precision: int8 quantises its copy in place
    for precision in args.precisions:
        where = scoring_device(DeviceSettings(device="cpu"), precision)
        predictors[precision] = (*load_predictor(args.model, args.encoder, where), precision)
    glode_names = {p: "glode" if p == "fp32" else f"glode_{p}" for p in args.precisions}
    outputs: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = predictors[args.precisions[0]][0]
        ref_dir, ref_kind = reference_dir(args.encoder, args.reference, model.config.entity_types, Path(tmp))
        pipe = pipeline("token-classification", model=str(ref_dir), aggregation_strategy="simple", device=-1)
        pipe_bf16 = (pipeline("token-classification", model=str(ref_dir), aggregation_strategy="simple", device=-1,
                              dtype=torch.bfloat16) if args.hf_bf16 else None)

        def run_glode(precision):
            net, tok, enc, _ = predictors[precision]

            def go():
                items = [TaggedSentence(list(s), i) for i, s in enumerate(sentences)]
                predict_items(net, tok, enc, items, batch_size=args.batch_size, progress=False, precision=precision)
                outputs[glode_names[precision]] = items
                return sum(len(it.spans) for it in items)
            return go

        def run_hf(batch_size, p=pipe):
            def go():
                with torch.inference_mode():
                    out = p(texts, batch_size=batch_size)
                return sum(len(o) for o in out)
            return go

        variants = {glode_names[p]: run_glode(p) for p in args.precisions}
        if args.hf_batch_1:
            variants["hf_pipeline"] = run_hf(1)
        variants[f"hf_pipeline_batch{args.batch_size}"] = run_hf(args.batch_size)
        if pipe_bf16 is not None:
            variants[f"hf_pipeline_batch{args.batch_size}_bf16"] = run_hf(args.batch_size, pipe_bf16)
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
        "order": "interleaved, rotated every repeat; one process",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python bench/predict_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cpu_flags": cpu_flags(),
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
    if gold is not None:  # each glode precision's strict F1 on these sentences (seqeval, as the evaluate stage)
        from glode.metrics import ner_scores
        from glode.spans import Span

        cap = predictors[args.precisions[0]][0].config.max_span_len
        for name, items in outputs.items():
            f1 = ner_scores(gold, [[Span(a, b, c) for a, b, c, _ in it.spans] for it in items], cap)["f1"]
            result["variants"][name]["f1"] = round(f1, 5)
        if "glode" in outputs:
            for name in outputs:
                if name != "glode":
                    result["variants"][name]["f1_minus_fp32_points"] = round(
                        100 * (result["variants"][name]["f1"] - result["variants"]["glode"]["f1"]), 2)
    # every glode variant against every other variant: sentences per second (wall) and per CPU second
    hf = [name for name in result["variants"] if name.startswith("hf_")]
    result["speedup"], result["speedup_cpu_time"] = {}, {}
    for g in glode_names.values():
        mine = result["variants"][g]
        others = [name for name in result["variants"] if name != g and (name in hf or g != "glode")]
        result["speedup"][g] = {name: round(mine["sentences_per_second"] / result["variants"][name]["sentences_per_second"], 2)
                                for name in others}
        result["speedup_cpu_time"][g] = {
            name: round(mine["sentences_per_cpu_second"] / result["variants"][name]["sentences_per_cpu_second"], 2)
            for name in others}
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, v in result["variants"].items():
        f1 = f", F1 {100 * v['f1']:.2f}" if "f1" in v else ""
        print(f"{name:>30}: {v['sentences_per_second']:7.1f} sentences/s wall (median {v['median_seconds']} s), "
              f"{v['sentences_per_cpu_second']:7.1f} per CPU second{f1}")
    for g in result["speedup"]:
        print(f"{g} speed-up, wall: {result['speedup'][g]}; CPU time: {result['speedup_cpu_time'][g]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
