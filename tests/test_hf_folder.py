"""Issue 23: model folders Hugging Face tools open (config and tokenizer at the top, a model
card), that load after being copied elsewhere, and that still read format 1 (encoder/)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from glode.errors import GlodeError
from glode.features import SentenceEncoder, attach_gold
from glode.model import SpanModelConfig, build_model, load_model, save_model
from glode.scoring import score_spans
from glode.settings import TrainSettings
from glode.training import train
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder

SENTENCES = [["Anna", "lives", "in", "New", "York", "."], ["Siemens", "and", "Ajax", "."]]
GOLD = [[(0, 1, "PER"), (3, 5, "LOC")], [(0, 1, "ORG"), (2, 3, "ORG")]]
CLASSES = ["O", "PER", "ORG", "LOC"]
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
        data = [attach_gold(e, g, index) for e, g in zip(SentenceEncoder(tok, 3, 64).encode(SENTENCES), GOLD)]
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
