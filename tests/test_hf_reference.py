"""bench/hf_reference.py, the benchmark's Hugging Face token-classification column: first
sub-token labels, BIO2 repair of its predictions, and a train -> score -> save -> reload run."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from glode.conll import read_conll
from tests.synthetic import all_words, write_corpus
from tests.tiny_encoder import build_tiny_encoder

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "hf_reference.py"
TYPES = ["PER", "ORG", "LOC"]


def _load_script():
    spec = importlib.util.spec_from_file_location("hf_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


hf = _load_script()
LABELS = hf.bio_labels(TYPES)  # O B-PER I-PER B-ORG I-ORG B-LOC I-LOC


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("hfref")
    encoder = build_tiny_encoder(root / "encoder", words=all_words())
    return SimpleNamespace(
        root=root,
        encoder=encoder,
        tokenizer=hf.load_reference_model(encoder, LABELS)[1],
        train=write_corpus(root / "train.txt", 48, seed=1),
        test=write_corpus(root / "test.txt", 24, seed=2),
    )


def test_only_each_words_first_piece_is_labelled(work):
    sentences = read_conll(work.train, TYPES)[:8]
    index = {t: i for i, t in enumerate(LABELS)}
    for s, item in zip(sentences, hf.encode(work.tokenizer, sentences, index, max_len=128)):
        word_ids = work.tokenizer(s.tokens, is_split_into_words=True).word_ids()
        firsts = [p for p, w in enumerate(word_ids) if w is not None and (p == 0 or word_ids[p - 1] != w)]
        assert item["first"] == firsts and len(firsts) == len(s.tokens)
        assert [item["labels"][p] for p in firsts] == [index[t] for t in s.tags]
        assert all(item["labels"][p] == -100 for p in range(len(word_ids)) if p not in firsts)


def test_words_cut_by_truncation_have_no_first_piece(work):
    sentence = read_conll(work.train, TYPES)[0]
    item = hf.encode(work.tokenizer, [sentence], None, max_len=4)[0]
    assert len(item["first"]) < item["n_words"] == len(sentence.tokens)


class _FixedTagger(torch.nn.Module):
    """Predicts a fixed label per sub-token position, whatever the input."""

    def __init__(self, per_position: list[int], n_labels: int):
        super().__init__()
        self.logits = torch.nn.functional.one_hot(torch.tensor(per_position), n_labels).float()

    def forward(self, input_ids, attention_mask):
        width = input_ids.shape[1]
        return SimpleNamespace(logits=self.logits[:width].expand(input_ids.shape[0], width, -1))


def test_predictions_are_repaired_to_bio2_and_padded_with_o():
    # sub-tokens: <s> w0 w0' w1 w2 w3 ...; w0 says I-PER (opens an entity), w1 continues it,
    # w2 says I-LOC after PER (a new entity), w3 was cut by truncation
    tagger = _FixedTagger([0, 2, 0, 2, 6, 0, 0], len(LABELS))
    item = {"input_ids": [0, 5, 6, 7, 8, 2], "labels": [-100] * 6, "first": [1, 3, 4], "n_words": 4}
    tokenizer = SimpleNamespace(pad_token_id=1)
    assert hf.predict_tags(tagger, tokenizer, [item], LABELS) == [["B-PER", "I-PER", "B-LOC", "O"]]


def test_reference_trains_scores_and_saves_a_loadable_model(work):
    out_json, out_model = work.root / "out" / "hf.json", work.root / "out" / "model"
    args = ["--encoder", str(work.encoder), "--train", str(work.train), "--test", str(work.test),
            *[a for t in TYPES for a in ("--labels", t)], "--epochs", "8", "--lr", "5e-3",
            "--batch-size", "8", "--out-json", str(out_json), "--out-model", str(out_model)]
    assert hf.main(args) == 0
    result = json.loads(out_json.read_text())
    assert result["steps"] == 8 * math.ceil(48 / 8)
    assert result["train_sentences"] == 48 and result["test_sentences"] == 24
    # the synthetic names repeat between train and test: a trained tagger finds most of them
    # (0.89-0.94 over seeds 0-5; after 1 epoch it finds none)
    assert result["f1"] > 0.6, result

    from transformers import AutoModelForTokenClassification

    reloaded = AutoModelForTokenClassification.from_pretrained(out_model, local_files_only=True)
    assert reloaded.config.id2label == dict(enumerate(LABELS))
