"""glode/steps/pseudo_label.py (the pseudo_label@rN node): span vectors from the round's model or
from the pretrained encoder (denoise.features), and clear errors for unknown features or a
missing encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from glode.errors import GlodeError, ParamError
from glode.features import SentenceEncoder
from glode.model import SpanModelConfig, build_model
from glode.pseudo_folder import SOURCE_REPS, TARGET_REPS, load_array, read_pseudo_manifest
from glode.settings import DenoiseSettings, EvaluateSettings
from glode.tables import read_sentences
from tests.pseudo_workspace import CLASSES, run_pseudo_label, write_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return write_workspace(tmp_path_factory.mktemp("pseudo"))


def test_encoder_features_are_the_pretrained_encoders_span_endpoints(workspace):
    model_dir = run_pseudo_label(workspace, "model")
    enc_dir = run_pseudo_label(workspace, "encoder", features="encoder", encoder_dir=workspace / "encoder")
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
    np.testing.assert_allclose(by_encoder[: len(z)], z, atol=5e-4)  # stored in float16 (~3 digits)
    assert not np.allclose(by_model[: len(z), :64] / np.linalg.norm(by_model[: len(z), :64], axis=1, keepdims=True), z,
                           atol=1e-2)
    assert load_array(enc_dir / SOURCE_REPS).shape[1] == 64


def test_unknown_features_and_missing_encoder_are_clear_errors(workspace):
    with pytest.raises(ParamError, match="denoise.features"):
        run_pseudo_label(workspace, "bad", features="pretrained")
    with pytest.raises(GlodeError, match="encoder stage"):
        run_pseudo_label(workspace, "missing", features="encoder", encoder_dir=workspace / "nowhere")
    assert not (workspace / "rounds/bad").exists() and not (workspace / "rounds/missing").exists()


def test_streaming_in_chunks_writes_what_one_chunk_writes(workspace, monkeypatch):
    """The stage scores, projects and writes a few sentences at a time (CHUNK_SENTENCES): the span
    table and the vectors do not depend on the chunk size (the projection is fitted once, on
    the sampled sentences)."""
    import glode.steps.pseudo_label as step
    from glode.pseudo_folder import SPANS_FILE, SPANS_KIND
    from glode.tables import read_table

    outs = {}
    for chunk in (1000, 3):
        monkeypatch.setattr(step, "CHUNK_SENTENCES", chunk)
        outs[chunk] = workspace / "rounds" / f"chunk{chunk}"
        step.pseudo_label_round(workspace / "models/r0", workspace / "tables", outs[chunk],
                                DenoiseSettings(dim=8, seed=0), EvaluateSettings(batch_size=4), progress=False)
    one, many = (read_table(outs[c] / SPANS_FILE, SPANS_KIND) for c in (1000, 3))
    assert len(one) > 50 and one.sentence_id.nunique() == 10
    import pandas as pd

    pd.testing.assert_frame_equal(one.drop(columns=CLASSES), many.drop(columns=CLASSES))
    np.testing.assert_allclose(one[CLASSES].to_numpy(), many[CLASSES].to_numpy(), atol=1e-6)
    for name in (TARGET_REPS, SOURCE_REPS):
        a, b = load_array(outs[1000] / name), load_array(outs[3] / name)
        assert a.dtype == np.float16 and a.shape[1] == 8
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
    assert read_pseudo_manifest(outs[3])["target_spans"] == len(one)


def test_the_projection_is_fitted_on_the_sampled_sentences(workspace, monkeypatch):
    """With a sample smaller than the corpora the basis comes from some sentences only, and the
    vectors stay unit vectors of denoise.dim dimensions."""
    import glode.steps.pseudo_label as step

    monkeypatch.setattr(step, "PROJECTION_SAMPLE", 40)
    out = workspace / "rounds" / "sampled"
    step.pseudo_label_round(workspace / "models/r0", workspace / "tables", out, DenoiseSettings(dim=4, seed=0),
                            EvaluateSettings(), progress=False)
    full = workspace / "rounds" / "all"
    monkeypatch.setattr(step, "PROJECTION_SAMPLE", 10**6)
    step.pseudo_label_round(workspace / "models/r0", workspace / "tables", full, DenoiseSettings(dim=4, seed=0),
                            EvaluateSettings(), progress=False)
    sampled, everything = load_array(out / TARGET_REPS).astype(np.float32), load_array(full / TARGET_REPS).astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(sampled, axis=1), 1, atol=2e-3)
    assert sampled.shape == everything.shape
    assert not np.allclose(sampled, everything, atol=1e-2)  # another basis
