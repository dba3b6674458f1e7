"""Median time of one training step (NER on a source batch, MLM on a target batch).

Run after `dvc repro prepare encoder`:  python bench/train_step_bench.py --steps 12
Prints JSON; compares length-grouped batches (what training uses) with random batches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from glode.features import SentenceEncoder, collate
from glode.model import SpanModelConfig, build_model, mask_tokens
from glode.pipeline import encode_table, table_labels
from glode.training import length_grouped_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoder", default="encoder")
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    tables = Path(args.tables)
    classes = ["O", *table_labels(tables)]
    model, tok = build_model(args.encoder, SpanModelConfig(classes=classes), seed=0)
    model.freeze_word_embeddings(True)
    enc = SentenceEncoder(tok, 4, 128)
    _, src = encode_table(enc, tables / "source_train.parquet", {c: i for i, c in enumerate(classes)})
    _, tgt = encode_table(enc, tables / "target_unlabelled.parquet", None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    gen = torch.Generator().manual_seed(0)
    special = set(tok.all_special_ids)
    rng = np.random.default_rng(0)
    grouped = length_grouped_batches([len(s.input_ids) for s in src], args.batch_size, rng)
    randomb = [rng.permutation(len(src))[: args.batch_size] for _ in range(args.steps)]
    tgt_batches = length_grouped_batches([len(s.input_ids) for s in tgt], args.batch_size, rng)
    model.train()

    def ner(idx):
        b = collate([src[i] for i in idx], tok.pad_token_id)
        loss = torch.nn.functional.cross_entropy(model(b), b.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def mlm(idx):
        b = collate([tgt[i] for i in idx], tok.pad_token_id)
        ids, labels = mask_tokens(b.input_ids, b.attention_mask, special, tok.mask_token_id, 0.25, gen)
        loss = model.mlm_loss(ids, b.attention_mask, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = {"ner_grouped": [], "ner_random": [], "mlm_grouped": []}
    for k in range(args.steps):  # interleaved, so load changes hit all variants alike
        for name, fn, idx in (("ner_grouped", ner, grouped[k]), ("ner_random", ner, randomb[k]), ("mlm_grouped", mlm, tgt_batches[k])):
            t = time.perf_counter()
            fn(idx)
            times[name].append(time.perf_counter() - t)
    out = {name: round(float(np.median(v)), 3) for name, v in times.items()}
    out["random_over_grouped"] = round(out["ner_random"] / out["ner_grouped"], 2)
    out.update(batch_size=args.batch_size, steps=args.steps, threads=torch.get_num_threads())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
