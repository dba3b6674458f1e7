"""pseudo_label_round: span vectors from the round's model or from the pretrained encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from glode.errors import GlodeError, ParamError
from glode.features import SentenceEncoder
from glode.model import SpanModelConfig, build_model, save_model
from glode.pseudo_folder import SOURCE_REPS, TARGET_REPS, load_array, read_pseudo_manifest
from glode.settings import DataSettings, DenoiseSettings, EvaluateSettings
from glode.steps.pseudo_label import pseudo_label_round
from glode.steps.prepare import prepare_tables
from glode.tables import read_sentences
from tests.synthetic import all_words, write_corpus
from tests.tiny_encoder import build_tiny_encoder

CLASSES = ["O", "PER", "ORG", "LOC"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Prepared tables, a tiny encoder, and a 'trained' model r0 whose encoder weights differ from it."""
    root = tmp_path_factory.mktemp("pseudo")
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


def _run(root: Path, name: str, features: str = "model", encoder_dir: Path | None = None) -> Path:
    out = root / "rounds" / name
    pseudo_label_round(root / "models/r0", root / "tables", out, DenoiseSettings(dim=0, seed=0, features=features),
                       EvaluateSettings(), encoder_dir=encoder_dir, progress=False)
    return out


def test_encoder_features_are_the_pretrained_encoders_span_endpoints(workspace):
    model_dir = _run(workspace, "model")
    enc_dir = _run(workspace, "encoder", features="encoder", encoder_dir=workspace / "encoder")
    assert read_pseudo_manifest(enc_dir)["features"] == "encoder"
    by_model, by_encoder = load_array(model_dir / TARGET_REPS), load_array(enc_dir / TARGET_REPS)
    assert by_encoder.shape == (by_model.shape[0], 64)  # 2 x hidden 32; the model's adds its embeddings
    assert by_model.shape[1] > 64
    # the oracle: the pretrained encoder's last layer at each span's first and last sub-token
    plain, tok = build_model(workspace / "encoder", SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=24),
                             seed=0)
    plain.eval()
    target = read_sentences(workspace / "tables/target_unlabelled.parquet")
    sentence = SentenceEncoder(tok, 3, 24).encode([target[0].tokens])[0]
    with torch.no_grad():
        assert sentence.windows is None
        ids = torch.from_numpy(np.asarray(sentence.input_ids))[None]
        hidden = plain.encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
    z = torch.cat([hidden[torch.from_numpy(sentence.span_tok_start)], hidden[torch.from_numpy(sentence.span_tok_end)]],
                  1).numpy()
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(by_encoder[: len(z)], z, atol=1e-4)
    assert not np.allclose(by_model[: len(z), :64] / np.linalg.norm(by_model[: len(z), :64], axis=1, keepdims=True), z,
                           atol=1e-2)
    assert load_array(enc_dir / SOURCE_REPS).shape[1] == 64


def test_unknown_features_and_missing_encoder_are_clear_errors(workspace):
    with pytest.raises(ParamError, match="denoise.features"):
        _run(workspace, "bad", features="pretrained")
    with pytest.raises(GlodeError, match="encoder stage"):
        _run(workspace, "missing", features="encoder", encoder_dir=workspace / "nowhere")
    assert not (workspace / "rounds/bad").exists() and not (workspace / "rounds/missing").exists()


def test_initial_labels_report_the_soft_quality_of_y0(workspace):
    """r0's statistics carry the soft scores of Y0 beside the hard ones (the report's r0 row)."""
    import json

    from glode.label_quality import soft_scores
    from glode.label_table import class_ids, initial_soft_labels
    from glode.pseudo_folder import SPANS_FILE, SPANS_KIND
    from glode.steps.initial_labels import initial_labels
    from glode.tables import read_table

    out = workspace / "r0"
    summary = initial_labels(workspace / "models/r0", workspace / "tables", out / "labels.parquet",
                             out / "r0.json", EvaluateSettings(), progress=False)
    spans = read_table(_run(workspace, "for-r0") / SPANS_FILE, SPANS_KIND)
    want = soft_scores(initial_soft_labels(spans, CLASSES), class_ids(spans.gold, CLASSES))
    assert summary["pseudo_label"]["soft_after"] == pytest.approx(want)
    assert json.loads((out / "r0.json").read_text())["pseudo_label_soft_f1"] == pytest.approx(want["f1"])
