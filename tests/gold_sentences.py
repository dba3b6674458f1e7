"""Three gold-labelled sentences for the span model's tests (features, scoring, model, training):
their words, spans and classes, encoded with gold labels, and a model trained on them."""

from __future__ import annotations

import numpy as np

from glode.features import SentenceEncoder, attach_gold
from glode.model import SpanModelConfig, build_model
from glode.settings import TrainSettings
from glode.training import train

SENTENCES = [
    ["Anna", "lives", "in", "New", "York", "."],
    ["Siemens", "and", "Ajax", "."],
    ["Jan", "de", "Vries", "visited", "Rotterdam", "today", "."],
]
GOLD = [[(0, 1, "PER"), (3, 5, "LOC")], [(0, 1, "ORG"), (2, 3, "ORG")], [(0, 3, "PER"), (4, 5, "LOC")]]
CLASSES = ["O", "PER", "ORG", "LOC"]


def encoded(tokenizer, max_span_len=3, max_seq_len=64):
    enc = SentenceEncoder(tokenizer, max_span_len, max_seq_len).encode(SENTENCES)
    index = {c: i for i, c in enumerate(CLASSES)}
    return [attach_gold(e, g, index) for e, g in zip(enc, GOLD)]


def trained(encoder_dir, freeze: bool, seed: int = 0, epochs: int = 2, target_class: int | None = None,
             mlm_weight: float = TrainSettings.mlm_weight):
    """A model trained on the gold sentences; with ``target_class``, also on those sentences as a
    target corpus whose soft labels put every candidate span in that class."""
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=seed)
    data = encoded(tok)
    target = None
    if target_class is not None:
        target = SentenceEncoder(tok, 3, 64).encode(SENTENCES)
        for e in target:
            e.span_soft = np.zeros((len(e.span_word_start), len(CLASSES)), np.float32)
            e.span_soft[:, target_class] = 1.0
    cfg = TrainSettings(epochs=epochs, batch_size=2, seed=seed, lr=1e-3, freeze_word_embeddings=freeze, mlm_weight=mlm_weight)
    train(model, tok, data, cfg, mlm_corpus=data, target=target, progress=False)
    return model, tok, data
