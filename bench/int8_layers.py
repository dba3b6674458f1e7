"""Which of the encoder's linear layers int8 scoring can quantise: test F1 and CPU time of a trained
model with each set quantised (issue 38; why `glode.device.quantize_int8` keeps the feed-forward
down projections in fp32).

    python bench/int8_layers.py --projects ../bench-work/x4/de-s0 ../bench-work/x4/ar-s0 \\
        --sentences 1500 --threads 1 --out bench/results/int8_layers.json

For each work folder (read only) its `models/<round>` scores the first `--sentences` sentences of
`tables/target_test.parquet` (`glode.corpus.evaluate_corpus`, fp32 outside the quantised layers)
with each layer set dynamically quantised to int8 (`glode.device.quantize_int8` given the set:
per-channel weights, activations per batch), on a fresh copy of the model, in one process: none (fp32), all linear layers, all but the down projections (in > out features:
`quantize_int8`'s choice), the attention's only, the feed-forward's only, all but query/key/value.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def layer_sets(encoder) -> dict[str, list[str] | None]:
    import torch

    linear = {n: m for n, m in encoder.named_modules() if type(m) is torch.nn.Linear}
    down = {n for n, m in linear.items() if m.in_features > m.out_features}
    return {
        "fp32": None,
        "all": list(linear),
        "all_but_down_projections": [n for n in linear if n not in down],
        "attention_only": [n for n in linear if ".attention." in n],
        "feed_forward_only": [n for n in linear if ".intermediate." in n or n in down],
        "all_but_query_key_value": [n for n in linear if ".attention.self." not in n],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=Path, nargs="+", required=True, help="work folders (read only)")
    ap.add_argument("--round", default="r0")
    ap.add_argument("--sentences", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/int8_layers.json")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)

    import torch
    from transformers.utils import logging as hf_logging

    from glode.atomic import atomic_path
    from glode.corpus import encode_table, evaluate_corpus
    from glode.device import quantize_int8
    from glode.features import SentenceEncoder
    from glode.model import load_model

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    runs = []
    for project in args.projects:
        model, tok, _ = load_model(project / "models" / args.round, project / "encoder")
        enc = SentenceEncoder(tok, model.config.max_span_len, model.config.max_seq_len)
        sentences, encoded = encode_table(enc, project / "tables/target_test.parquet", None)
        sentences, encoded = sentences[: args.sentences], encoded[: args.sentences]
        rows = {}
        for name, chosen in layer_sets(model.encoder).items():
            m = copy.deepcopy(model)
            if chosen is not None:
                quantize_int8(m, chosen)
            c0 = time.process_time()
            s = evaluate_corpus(m, tok, sentences, encoded, 64, False, "fp32")
            rows[name] = {"layers": 0 if chosen is None else len(chosen), "f1": round(s["f1"], 5),
                          "pred_entities": s["pred_entities"], "cpu_s": round(time.process_time() - c0, 2)}
            print(f"{project.name} {name}: {rows[name]}", file=sys.stderr, flush=True)
            del m
        for name, row in rows.items():
            row["f1_minus_fp32_points"] = round(100 * (row["f1"] - rows["fp32"]["f1"]), 2)
            row["cpu_over_fp32"] = round(row["cpu_s"] / rows["fp32"]["cpu_s"], 3)
        runs.append({"project": str(project), "round": args.round, "sentences": len(sentences), "sets": rows})
    result = {"command": "python bench/int8_layers.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "threads": args.threads,
                          "torch": torch.__version__, "quantized_engine": torch.backends.quantized.engine},
              "note": args.note, "runs": runs}
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
