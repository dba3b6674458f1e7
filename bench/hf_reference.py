"""The practitioner's baseline: Hugging Face token classification, trained on the source
language and applied zero-shot to the target (issue 5's reference column).

AutoModelForTokenClassification on the same encoder folder, first-sub-token labels (-100 on
the other sub-tokens), one learning rate for everything, AdamW (weight decay 0.01, none on
biases and LayerNorm), linear warm-up/decay, gradient clip 1.0, shuffled batches: what
`run_ner.py` does, in a plain torch loop (the Trainer needs `accelerate`, which glode does not
install). Predictions are the first sub-token's argmax per word, repaired to BIO2 (an `I-X`
that opens an entity becomes `B-X`, as seqeval's default mode reads it) and scored with glode's
own `ner_scores` (seqeval strict IOB2 + span F1), so the numbers compare with `metrics/rN.json`.

    python bench/hf_reference.py --encoder encoder --train data/en/train.txt \\
        --test data/de/test.txt --labels PER --labels ORG --labels LOC \\
        --out-json /tmp/hf.json --out-model /tmp/hf-model

Writes the metrics JSON (with step count, train/eval seconds, median step time, peak RSS) and,
with --out-model, a model folder that `transformers.pipeline("token-classification")` loads.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from glode.conll import read_conll
from glode.metrics import ner_scores
from glode.spans import tags_to_spans, to_bio2


def bio_labels(types: list[str]) -> list[str]:
    return ["O", *[f"{p}-{t}" for t in types for p in ("B", "I")]]


def encode(tokenizer, sentences, label_index: dict[str, int] | None, max_len: int) -> list[dict]:
    """Tokenise pre-split words; label each word's first sub-token (-100 elsewhere)."""
    out = []
    for s in sentences:
        enc = tokenizer(s.tokens, is_split_into_words=True, truncation=True, max_length=max_len)
        word_ids = enc.word_ids()
        first = []  # sub-token position of each visible word's first piece
        labels = []
        prev = None
        for pos, w in enumerate(word_ids):
            if w is None or w == prev:
                labels.append(-100)
            else:
                first.append(pos)
                labels.append(label_index[s.tags[w]] if label_index is not None else 0)
            prev = w
        out.append({"input_ids": enc["input_ids"], "labels": labels, "first": first, "n_words": len(s.tokens)})
    return out


def pad_batch(items: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x["input_ids"]) for x in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    for i, x in enumerate(items):
        n = len(x["input_ids"])
        ids[i, :n] = torch.tensor(x["input_ids"])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(x["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def optimizer_for(model, lr: float, weight_decay: float, train_word_embeddings: bool = True) -> torch.optim.Optimizer:
    if not train_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def load_reference_model(encoder: str | Path, labels: list[str]):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder, local_files_only=True)
    model = AutoModelForTokenClassification.from_pretrained(
        encoder, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={t: i for i, t in enumerate(labels)}, local_files_only=True,
    )
    return model, tokenizer


def train_reference(model, tokenizer, train_items: list[dict], *, epochs: int, lr: float, batch_size: int, seed: int,
                    weight_decay: float = 0.01, warmup_ratio: float = 0.1, grad_clip: float = 1.0,
                    train_word_embeddings: bool = True) -> dict:
    """Fine-tune in place; returns step count, seconds and the median step time."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = optimizer_for(model, lr, weight_decay, train_word_embeddings)
    steps_per_epoch = math.ceil(len(train_items) / batch_size)
    total = steps_per_epoch * epochs
    sched = get_linear_schedule_with_warmup(opt, int(total * warmup_ratio), total)
    model.train()
    step_times = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="reference training", unit="step")
    for _ in range(epochs):
        order = rng.permutation(len(train_items))
        for b in range(steps_per_epoch):
            t = time.perf_counter()
            batch = pad_batch([train_items[i] for i in order[b * batch_size:(b + 1) * batch_size]], tokenizer.pad_token_id)
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
            opt.step()
            sched.step()
            step_times.append(time.perf_counter() - t)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return {"steps": total, "train_seconds": round(time.perf_counter() - t0, 2),
            "median_step_seconds": round(statistics.median(step_times), 4)}


@torch.inference_mode()
def predict_tags(model, tokenizer, items: list[dict], labels: list[str], batch_size: int = 64) -> list[list[str]]:
    """Word-level BIO2 tags: first sub-token argmax; words cut by truncation are O."""
    order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
    tags: list[list[str] | None] = [None] * len(items)
    for b in tqdm(range(0, len(order), batch_size), desc="reference predicting", unit="batch"):
        idx = order[b:b + batch_size]
        batch = pad_batch([items[i] for i in idx], tokenizer.pad_token_id)
        pred = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
        for row, i in enumerate(idx):
            word_tags = [labels[int(pred[row, p])] for p in items[i]["first"]]
            word_tags += ["O"] * (items[i]["n_words"] - len(word_tags))
            tags[i] = to_bio2(word_tags)
    return tags  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="encoder", help="HF encoder folder (the pipeline's `encoder` output)")
    ap.add_argument("--train", required=True, type=Path, help="source-language CoNLL training file")
    ap.add_argument("--test", required=True, type=Path, help="target-language CoNLL test file")
    ap.add_argument("--labels", action="append", required=True, help="entity type (repeat)")
    ap.add_argument("--max-train", type=int, default=0, help="first N training sentences (0: all)")
    ap.add_argument("--max-test", type=int, default=0, help="first N test sentences (0: all)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seq-len", type=int, default=128)
    ap.add_argument("--span-cap", type=int, default=4, help="max span length for the span-F1 column only")
    ap.add_argument("--freeze-word-embeddings", action="store_true", help="as glode's default does (not what run_ner.py does)")
    ap.add_argument("--out-json", required=True, type=Path)
    ap.add_argument("--out-model", type=Path, help="save the fine-tuned model and tokenizer here")
    args = ap.parse_args(argv)

    labels = bio_labels(args.labels)
    train = read_conll(args.train, args.labels)
    test = read_conll(args.test, args.labels)
    if args.max_train:
        train = train[: args.max_train]
    if args.max_test:
        test = test[: args.max_test]
    model, tokenizer = load_reference_model(args.encoder, labels)
    index = {t: i for i, t in enumerate(labels)}
    train_items = encode(tokenizer, train, index, args.max_seq_len)
    test_items = encode(tokenizer, test, None, args.max_seq_len)
    fit = train_reference(model, tokenizer, train_items, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                          seed=args.seed, train_word_embeddings=not args.freeze_word_embeddings)
    t = time.perf_counter()
    pred = predict_tags(model, tokenizer, test_items, labels)
    eval_seconds = round(time.perf_counter() - t, 2)
    scores = ner_scores([s.tags for s in test], [tags_to_spans(p) for p in pred], args.span_cap)
    result = {
        **scores, **fit, "eval_seconds": eval_seconds,
        "train_sentences": len(train), "test_sentences": len(test),
        "truncated_test_words": int(sum(x["n_words"] - len(x["first"]) for x in test_items)),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.out_model:
        model.save_pretrained(args.out_model)
        tokenizer.save_pretrained(args.out_model)
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"reference: F1 {scores['f1']:.4f} (P {scores['precision']:.4f} R {scores['recall']:.4f}), "
          f"{fit['steps']} steps in {fit['train_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
