"""glode/model.py: the span NER model's folder (save -> load -> predict round trip, foreign, future
and incomplete folders, Hugging Face tools opening it, copies, format 1), masked-LM masking and
the masked-LM loss over a corpus vocabulary."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from glode.errors import GlodeError
from glode.features import SentenceEncoder, attach_gold, collate
from glode.model import SpanModelConfig, build_model, load_model, mask_tokens, save_model
from glode.scoring import decode_spans, score_spans
from glode.settings import TrainSettings
from glode.training import train
from tests.gold_sentences import CLASSES, GOLD, SENTENCES, encoded, trained
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())


@pytest.mark.parametrize("freeze", [True, False])
def test_save_load_predict_round_trip(encoder_dir, tmp_path, freeze):
    model, tok, data = trained(encoder_dir, freeze)
    before = score_spans(model, data, tok.pad_token_id, progress=False)
    out = save_model(model, tok, tmp_path / "m", encoder_dir, train_params={"seed": 0})
    meta = json.loads((out / "glode_model.json").read_text())
    assert meta["classes"] == CLASSES and meta["label2id"]["LOC"] == 3
    assert (meta["external_word_embeddings"] is not None) == freeze
    assert not [p for p in tmp_path.iterdir() if p.name != "m"], "temporary folders left behind"
    loaded, tok2, _ = load_model(out)
    after = score_spans(loaded, data, tok2.pad_token_id, progress=False)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.probs, b.probs)
    assert [decode_spans(d, s.probs, CLASSES) for d, s in zip(data, before)] == [
        decode_spans(d, s.probs, CLASSES) for d, s in zip(data, after)
    ]


def test_load_rejects_foreign_or_future_folders(encoder_dir, tmp_path):
    with pytest.raises(GlodeError, match="not a glode model folder"):
        load_model(tmp_path)
    model, tok, _ = trained(encoder_dir, True, epochs=1)
    out = save_model(model, tok, tmp_path / "m", encoder_dir)
    meta = json.loads((out / "glode_model.json").read_text())
    meta["format_version"] = 99
    (out / "glode_model.json").write_text(json.dumps(meta))
    with pytest.raises(GlodeError, match="format version 99"):
        load_model(out)


def test_incomplete_model_folders_say_what_is_missing(encoder_dir, tmp_path):
    """Each used to be a KeyError, a hub-connection OSError or 'not a glode model folder'."""
    import shutil

    with pytest.raises(GlodeError, match="no such model folder"):
        load_model(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(GlodeError, match="is a file, not a model folder"):
        load_model(tmp_path / "file")
    model, tok, _ = trained(encoder_dir, True, epochs=1)
    good = save_model(model, tok, tmp_path / "good", encoder_dir)

    def broken(name, edit):
        folder = shutil.copytree(good, tmp_path / name)
        edit(folder)
        return folder

    def drop_key(key):
        def edit(folder):
            meta = json.loads((folder / "glode_model.json").read_text())
            del meta[key]
            (folder / "glode_model.json").write_text(json.dumps(meta))
        return edit

    cases = {
        "no-config": (drop_key("config"), "no 'config' entry"),
        "no-config-json": (lambda f: (f / "config.json").unlink(), "config.json is missing"),
        "no-tokenizer": (lambda f: (f / "tokenizer_config.json").unlink(), "tokenizer_config.json is missing"),
        "no-weights": (lambda f: (f / "weights.safetensors").unlink(), "weights.safetensors is missing"),
    }
    for name, (edit, text) in cases.items():
        with pytest.raises(GlodeError, match=text) as err:
            load_model(broken(name, edit))
        assert "train_source and train_target stages" in str(err.value), str(err.value)
    load_model(good)


def test_mask_tokens_rate_and_specials():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (64, 50))
    ids[:, 0], ids[:, -1] = 0, 2
    attn = torch.ones_like(ids)
    attn[:, 40:] = 0
    ids[:, 40:] = 1
    masked, labels = mask_tokens(ids, attn, {0, 1, 2}, 99, 0.25, gen)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 40:].any()
    assert (masked[chosen] == 99).all() and (masked[~chosen] == ids[~chosen]).all()
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.sum().item() / (64 * 38)
    assert 0.22 < rate < 0.28


def test_mlm_softmax_over_a_corpus_vocabulary_matches_the_full_logits_restricted(encoder_dir):
    """With ``vocab`` the loss is the cross-entropy of the full logits' columns ``vocab`` (an
    independent computation from the full head); with every id it is the full loss itself; a
    masked id outside ``vocab`` is refused rather than scored against a wrong column."""
    from glode.training import corpus_vocabulary

    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    model.eval()
    data = encoded(tok)
    special = set(tok.all_special_ids)
    vocab = corpus_vocabulary(data, special)
    assert vocab.tolist() == sorted({int(i) for e in data for i in e.input_ids} - special)
    batch = collate(data, tok.pad_token_id)
    ids, labels = mask_tokens(batch.input_ids, batch.attention_mask, special, tok.mask_token_id, 0.5,
                              torch.Generator().manual_seed(0))
    picked = labels != -100
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids, attention_mask=batch.attention_mask).last_hidden_state[picked]
        full = model.mlm_head(hidden, model.encoder.get_input_embeddings().weight)
        oracle = torch.nn.functional.cross_entropy(full[:, vocab], torch.searchsorted(vocab, labels[picked]))
        restricted = model.mlm_loss(ids, batch.attention_mask, labels, vocab=vocab)
        everything = model.mlm_loss(ids, batch.attention_mask, labels, vocab=torch.arange(full.shape[1]))
        plain = model.mlm_loss(ids, batch.attention_mask, labels)
    assert float(restricted) == pytest.approx(float(oracle), rel=1e-5)
    assert float(everything) == pytest.approx(float(plain), rel=1e-5)
    assert float(restricted) < float(plain)  # fewer competitors in the softmax
    with pytest.raises(ValueError, match="not in the MLM vocabulary"):
        model.mlm_loss(ids, batch.attention_mask, labels, vocab=vocab[vocab != labels[picked][0]])


# --- a model folder Hugging Face tools open, copied elsewhere, and of format 1 (issue 23) -------------

DATA = {"source_train": {"file": "data/en/train.txt", "sentences": 2}, "target_unlabelled": {"file": "data/de/train.txt",
                                                                                            "sentences": 5}}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project-like layout: encoder/ and models/r0 beside it, trained with frozen and with
    trained word embeddings."""
    root = tmp_path_factory.mktemp("proj")
    enc = build_tiny_encoder(root / "encoder", words=all_words())
    folders = {}
    for freeze in (True, False):
        model, tok = build_model(enc, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
        index = {c: i for i, c in enumerate(CLASSES)}
        data = [attach_gold(e, g, index) for e, g in zip(SentenceEncoder(tok, 3, 64).encode(SENTENCES[:2]), GOLD[:2])]
        cfg = TrainSettings(epochs=1, batch_size=2, lr=1e-3, mlm_weight=0.0, freeze_word_embeddings=freeze)
        history = train(model, tok, data, cfg, progress=False)
        history[-1].update(dev_f1=0.5, dev_precision=0.25, dev_recall=1.0)
        folders[freeze] = save_model(model, tok, root / "models" / f"r0-{freeze}", enc, train_params=cfg.recorded(),
                                     extra={"round": "r0", "history": history, "training_data": DATA},
                                     command="python stages/train_source.py --epochs 1")
    return root, enc, folders, data


def _probs(folder, data, encoder_dir=None):
    model, tok, _ = load_model(folder, encoder_dir)
    return [s.probs for s in score_spans(model, data, tok.pad_token_id, progress=False)]


def test_auto_config_and_auto_tokenizer_open_the_model_folder(project):
    from transformers import AutoConfig, AutoTokenizer

    _, enc, folders, _ = project
    folder = folders[True]
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    assert config.id2label == dict(enumerate(CLASSES)) and config.label2id["LOC"] == 3
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    base = AutoTokenizer.from_pretrained(enc, local_files_only=True)
    assert tok("Anna lives in New York .")["input_ids"] == base("Anna lives in New York .")["input_ids"]
    assert not (folder / "encoder").exists()


def test_the_model_card_says_labels_data_metrics_and_command(project):
    _, _, folders, _ = project
    card = (folders[True] / "README.md").read_text()
    for text in ("PER, ORG, LOC", "| source_train | `data/en/train.txt` | 2 |", "| target_unlabelled | `data/de/train.txt` | 5 |",
                 "F1 0.5000 (P 0.2500, R 1.0000)", "| lr | `0.001` |", "python stages/train_source.py --epochs 1",
                 "encoder_dir=ENCODER", "glode predict --encoder"):
        assert text in card, text
    assert "encoder_dir=ENCODER" not in (folders[False] / "README.md").read_text()  # nothing external to find


def test_a_copied_folder_loads_and_predicts_the_same(project, tmp_path):
    """With trained embeddings the copy is complete; with frozen ones it names the encoder it
    needs, and loads with that encoder passed."""
    _, enc, folders, data = project
    for freeze, folder in folders.items():
        copy = shutil.copytree(folder, tmp_path / "elsewhere" / "deeper" / folder.name)
        before = _probs(folder, data)
        if freeze:
            with pytest.raises(GlodeError, match=r"pass the encoder folder explicitly \(glode predict --encoder DIR"):
                load_model(copy)
            after = _probs(copy, data, encoder_dir=enc)
        else:
            after = _probs(copy, data)
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)


def test_format_1_folders_still_load(project, tmp_path):
    """Before issue 23 the config and tokenizer lay under encoder/."""
    _, enc, folders, data = project
    old = shutil.copytree(folders[True], tmp_path / "models" / "old")
    (old / "encoder").mkdir()
    for f in list(old.iterdir()):
        if f.name not in ("glode_model.json", "weights.safetensors", "README.md", "encoder"):
            f.rename(old / "encoder" / f.name)
    meta = json.loads((old / "glode_model.json").read_text())
    meta["format_version"] = 1
    (old / "glode_model.json").write_text(json.dumps(meta))
    for a, b in zip(_probs(folders[True], data), _probs(old, data, encoder_dir=enc)):
        np.testing.assert_array_equal(a, b)
    (old / "encoder" / "config.json").unlink()
    with pytest.raises(GlodeError, match="encoder/config.json is missing"):
        load_model(old, enc)
