"""Pieces the bench scripts share: the training-step setup, the way they report, the CPU features they record."""

from __future__ import annotations

import json
from pathlib import Path


def step_setup(encoder: str | Path, tables: str | Path, max_span_len: int = 4):
    """``(model, tokenizer, classes, source, target)``: a fresh span model (seed 0) on the
    encoder folder, and the prepared source-train (with gold labels) and target-unlabelled
    tables encoded for it, as `train_source` sees them."""
    from glode.features import SentenceEncoder
    from glode.model import SpanModelConfig, build_model
    from glode.corpus import encode_table, table_labels

    tables = Path(tables)
    classes = ["O", *table_labels(tables)]
    model, tok = build_model(encoder, SpanModelConfig(classes=classes, max_span_len=max_span_len), seed=0)
    enc = SentenceEncoder(tok, max_span_len, 128)
    _, src = encode_table(enc, tables / "source_train.parquet", {c: i for i, c in enumerate(classes)})
    _, tgt = encode_table(enc, tables / "target_unlabelled.parquet", None)
    return model, tok, classes, src, tgt


def source_step_parts(encoder: str | Path, tables: str | Path, batch_size: int, mlm_batch_size: int):
    """``(model, tokenizer, optimizer, source batches, MLM batches, special ids, source, target)``
    for timing the `train_source` step: frozen word embeddings and AdamW as training sets them,
    length-grouped batches from a fixed seed, the model in training mode."""
    import numpy as np

    from glode.settings import TrainSettings
    from glode.training import build_optimizer, length_grouped_batches

    model, tok, _, src, tgt = step_setup(encoder, tables)
    model.freeze_word_embeddings(True)
    opt = build_optimizer(model, TrainSettings())
    rng = np.random.default_rng(0)
    src_batches = length_grouped_batches([len(s.input_ids) for s in src], batch_size, rng)
    mlm_batches = length_grouped_batches([len(s.input_ids) for s in tgt], mlm_batch_size, rng)
    model.train()
    return model, tok, opt, src_batches, mlm_batches, set(tok.all_special_ids), src, tgt


def emit(result: dict, out: Path | None) -> None:
    """The JSON on stdout and, with ``--out``, in a file."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def cpu_flags() -> list[str]:
    """The CPU features that decide bf16 and int8 speed (from /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return sorted({f for f in wanted if f" {f}" in text})
