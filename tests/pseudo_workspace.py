"""A small workspace for the tests of the pseudo_label and initial_labels steps: prepared tables,
a tiny encoder and a model r0 built on it, and the pseudo_label step run on them."""

from __future__ import annotations

from pathlib import Path

import torch

from glode.model import SpanModelConfig, build_model, save_model
from glode.settings import DataSettings, DenoiseSettings, EvaluateSettings
from glode.steps.prepare import prepare_tables
from glode.steps.pseudo_label import pseudo_label_round
from tests.synthetic import all_words, write_corpus
from tests.tiny_encoder import build_tiny_encoder

CLASSES = ["O", "PER", "ORG", "LOC"]


def write_workspace(root: Path) -> Path:
    """Prepared tables, a tiny encoder, and a 'trained' model r0 whose encoder weights differ from it."""
    files = {name: write_corpus(root / f"{name}.txt", n, seed)
             for name, n, seed in (("source_train", 12, 1), ("source_dev", 4, 2), ("target_unlabelled", 10, 3),
                                   ("target_test", 4, 4))}
    prepare_tables(files, DataSettings(labels=CLASSES[1:]), root / "tables")
    encoder = build_tiny_encoder(root / "encoder", words=all_words())
    model, tok = build_model(encoder, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=24), seed=0)
    with torch.no_grad():  # what training would do: the model's encoder is no longer the pretrained one
        gen = torch.Generator().manual_seed(0)
        for name, p in model.encoder.named_parameters():
            if "word_embeddings" not in name:
                p.add_(0.5 * torch.randn(p.shape, generator=gen))
    model.freeze_word_embeddings(True)
    save_model(model, tok, root / "models/r0", encoder)
    return root


def run_pseudo_label(root: Path, name: str, features: str = "model", encoder_dir: Path | None = None) -> Path:
    """The pseudo_label step on the workspace's r0 into rounds/NAME (unprojected span vectors)."""
    out = root / "rounds" / name
    pseudo_label_round(root / "models/r0", root / "tables", out, DenoiseSettings(dim=0, seed=0, features=features),
                       EvaluateSettings(), encoder_dir=encoder_dir, progress=False)
    return out
