"""Median time of one training step: glode's span NER step, its MLM step, and (with
--reference) the Hugging Face token-classification step on the same source sentences.

Run in a project (or a bench work folder) after `dvc repro prepare encoder`:

    python bench/train_step_bench.py --steps 12 --reference

Every step kind runs once per iteration, interleaved, so load changes hit them alike; the JSON
reports medians and ratios. Step kinds:
- `ner_grouped`: glode NER step (no MLM) on a length-grouped batch, word embeddings frozen
  (the default `train.freeze-word-embeddings: true`); `ner_random`: the same on a random batch.
- `mlm_grouped`: glode's masked-LM step on a target batch.
- `hf_frozen`: AutoModelForTokenClassification step on the same sentences as `ner_grouped`,
  word embeddings frozen too; `hf_full`: the same with every weight trainable (what
  `run_ner.py` does); `ner_full`: glode's NER step with every weight trainable.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import glode  # noqa: F401  (first: sets the OpenMP spin count before numpy's and torch's threads start)
import numpy as np
import torch

from glode.features import collate
from glode.model import mask_tokens
from glode.tables import read_sentences
from glode.training import length_grouped_batches

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_reference  # noqa: E402  (a sibling script)
from benchkit import emit, step_setup  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="encoder")
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-span-len", type=int, default=4)
    ap.add_argument("--reference", action="store_true", help="also time the HF token-classification step")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    tables = Path(args.tables)
    model, tok, classes, src, tgt = step_setup(args.encoder, tables, args.max_span_len)
    types = classes[1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)  # frozen weights get no grad, so AdamW skips them
    gen = torch.Generator().manual_seed(0)
    special = set(tok.all_special_ids)
    rng = np.random.default_rng(0)
    grouped = length_grouped_batches([len(s.input_ids) for s in src], args.batch_size, rng)
    randomb = [rng.permutation(len(src))[: args.batch_size] for _ in range(args.steps)]
    tgt_batches = length_grouped_batches([len(s.input_ids) for s in tgt], args.batch_size, rng)
    model.train()

    def ner(idx, frozen=True):
        model.freeze_word_embeddings(frozen)
        b = collate([src[i] for i in idx], tok.pad_token_id)
        loss = torch.nn.functional.cross_entropy(model(b), b.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def mlm(idx):
        model.freeze_word_embeddings(True)
        b = collate([tgt[i] for i in idx], tok.pad_token_id)
        ids, labels = mask_tokens(b.input_ids, b.attention_mask, special, tok.mask_token_id, 0.25, gen)
        loss = model.mlm_loss(ids, b.attention_mask, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    kinds = [("ner_grouped", ner, lambda k: grouped[k]), ("ner_random", ner, lambda k: randomb[k]),
             ("mlm_grouped", mlm, lambda k: tgt_batches[k])]
    if args.reference:
        labels = hf_reference.bio_labels(types)
        ref, ref_tok = hf_reference.load_reference_model(args.encoder, labels)
        ref.train()
        sentences = read_sentences(tables / "source_train.parquet")
        items = hf_reference.encode(ref_tok, sentences, {t: i for i, t in enumerate(labels)}, 128)
        ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-5)
        ref_emb = ref.get_input_embeddings().weight

        def hf(idx, frozen=True):
            ref_emb.requires_grad_(not frozen)
            loss = ref(**hf_reference.pad_batch([items[i] for i in idx], ref_tok.pad_token_id)).loss
            ref_opt.zero_grad(set_to_none=True)
            loss.backward()
            ref_opt.step()

        kinds += [("hf_frozen", hf, lambda k: grouped[k]),
                  ("ner_full", lambda idx: ner(idx, frozen=False), lambda k: grouped[k]),
                  ("hf_full", lambda idx: hf(idx, frozen=False), lambda k: grouped[k])]

    times = {name: [] for name, _, _ in kinds}
    for k in range(args.steps):
        for name, fn, batch in kinds:
            t = time.perf_counter()
            fn(batch(k))
            times[name].append(time.perf_counter() - t)
    out = {name: round(float(np.median(v)), 3) for name, v in times.items()}
    out["random_over_grouped"] = round(out["ner_random"] / out["ner_grouped"], 2)
    if args.reference:
        out["glode_over_hf_frozen"] = round(out["ner_grouped"] / out["hf_frozen"], 2)
        out["glode_over_hf_full"] = round(out["ner_full"] / out["hf_full"], 2)
        out["glode_default_over_hf_default"] = round(out["ner_grouped"] / out["hf_full"], 2)
    out.update(batch_size=args.batch_size, steps=args.steps, max_span_len=args.max_span_len,
               threads=torch.get_num_threads(), source_sentences=len(src))
    emit(out, args.out)


if __name__ == "__main__":
    main()
