"""Where a self-training step's time goes: source pass, target pass, MLM pass, optimiser.

Run in a project after `dvc repro prepare encoder` (the embedded default data and encoder):

    python bench/step_profile.py --steps 20 --out bench/results/step_profile.json

One `train_target@rN` step at the default settings is timed part by part, every part once per
step (so load changes hit them alike): `source` (collate, forward, cross-entropy, backward on a
length-grouped batch of `--batch-size` source sentences), `target` (the same with soft labels
on a target batch; `train_source` steps have no such part), `mlm` (masking, forward,
full-vocabulary logits at masked positions, backward on `--mlm-batch-size` target sentences),
`optimizer` (gradient clipping and the AdamW step); with `--mlm-vocab full corpus`, also the MLM
pass with the softmax over the target corpus's own sub-tokens (`train.mlm-vocab: corpus`). Each part runs its own backward, which
gives the same gradients as one backward of the summed loss; the JSON reports medians and each
part's share of their sum.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import glode  # noqa: F401  (first: sets the OpenMP spin count before numpy's and torch's threads start)
import numpy as np
from benchkit import emit, step_setup  # a sibling script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="encoder")
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mlm-batch-size", type=int, nargs="+", default=[8],
                    help="MLM batch sizes to time (each gets its own `mlm_<n>` part)")
    ap.add_argument("--mlm-vocab", nargs="+", default=["full"], choices=["full", "corpus"],
                    help="MLM softmax vocabularies to time (`corpus` parts are named `mlm_<n>_corpus`)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    import torch

    from glode.features import collate
    from glode.model import mask_tokens
    from glode.settings import TrainSettings as TrainConfig
    from glode.training import build_optimizer, corpus_vocabulary, length_grouped_batches, soft_cross_entropy

    model, tok, classes, src, tgt = step_setup(args.encoder, args.tables)
    model.freeze_word_embeddings(True)
    onehot_o = np.eye(len(classes), dtype=np.float32)[0]
    for e in tgt:
        e.span_soft = np.tile(onehot_o, (len(e.span_word_start), 1))
    cfg = TrainConfig()
    opt = build_optimizer(model, cfg)
    rng = np.random.default_rng(0)
    src_batches = length_grouped_batches([len(s.input_ids) for s in src], args.batch_size, rng)
    tgt_batches = length_grouped_batches([len(s.input_ids) for s in tgt], args.batch_size, rng)
    mlm_batches = {n: length_grouped_batches([len(s.input_ids) for s in tgt], n, rng) for n in args.mlm_batch_size}
    gen = torch.Generator().manual_seed(0)
    special = set(tok.all_special_ids)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()

    def source(k):
        b = collate([src[i] for i in src_batches[k % len(src_batches)]], tok.pad_token_id)
        torch.nn.functional.cross_entropy(model(b), b.labels).backward()

    def target(k):
        b = collate([tgt[i] for i in tgt_batches[k % len(tgt_batches)]], tok.pad_token_id)
        soft_cross_entropy(model(b), b.soft).backward()

    vocabularies = {"full": None, "corpus": corpus_vocabulary(tgt, special)}

    def mlm(n, vocab):
        def part(k):
            b = collate([tgt[i] for i in mlm_batches[n][k % len(mlm_batches[n])]], tok.pad_token_id)
            ids, labels = mask_tokens(b.input_ids, b.attention_mask, special, tok.mask_token_id, cfg.mlm_rate, gen)
            (cfg.mlm_weight * model.mlm_loss(ids, b.attention_mask, labels, vocab=vocabularies[vocab])).backward()
        return part

    def optimizer(k):
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    parts = [("source", source), ("target", target)] + [
        (f"mlm_{n}" + ("" if vocab == "full" else f"_{vocab}"), mlm(n, vocab))
        for n in args.mlm_batch_size for vocab in args.mlm_vocab]
    parts.append(("optimizer", optimizer))
    times = {name: [] for name, _ in parts}
    for k in range(args.steps + 1):
        for name, fn in parts:
            t = time.perf_counter()
            fn(k)
            if k:  # step 0 is a warm-up
                times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(v) for name, v in times.items()}
    default_parts = ["source", "target", f"mlm_{cfg.mlm_batch_size}", "optimizer"]
    total = sum(med[p] for p in default_parts if p in med)
    result = {
        "command": "python bench/step_profile.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "threads": torch.get_num_threads()},
        "steps": args.steps, "batch_size": args.batch_size,
        "corpus_vocabulary_size": len(vocabularies["corpus"]), "full_vocabulary_size": model.mlm_head.bias.numel(),
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "share_of_default_step": {p: round(med[p] / total, 3) for p in default_parts if p in med},
        "default_step_s": round(total, 4),
        "loadavg_before": os.getloadavg()[0],
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
