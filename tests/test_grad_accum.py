"""Issue 23: gradient accumulation (train.grad-accum): an optimiser step every N micro-batches on
their mean loss, the schedule counting optimiser steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glode.features import SentenceEncoder, attach_gold
from glode.model import SpanModelConfig, build_model
from glode.settings import TrainSettings
from glode.training import optimiser_steps, train
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder

CLASSES = ["O", "PER", "ORG", "LOC"]
WORDS = ["Anna", "lives", "in", "New", "York", "."]
# four orders of the same words: the same number of sub-tokens and of candidate spans in each
# sentence, so the mean loss over a batch of four is the mean of two batches' means
SENTENCES = [WORDS, WORDS[3:5] + WORDS[:3] + WORDS[5:], [WORDS[2], WORDS[0], WORDS[1], *WORDS[3:]],
             [WORDS[1], WORDS[2], WORDS[3], WORDS[4], WORDS[0], WORDS[5]]]
GOLD = [[(0, 1, "PER"), (3, 5, "LOC")], [(0, 2, "LOC"), (2, 3, "PER")], [(1, 2, "PER"), (3, 5, "LOC")],
        [(2, 4, "LOC"), (4, 5, "PER")]]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """The tiny encoder without dropout, so that a batch of four and two batches of two see the
    same network (dropout masks are drawn per batch shape)."""
    enc = build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())
    config = json.loads((enc / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (enc / "config.json").write_text(json.dumps(config))
    return enc


def _train(encoder_dir, batch_size: int, grad_accum: int, epochs: int = 3, sentences=SENTENCES, gold=GOLD):
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64, dropout=0.0),
                             seed=0)
    index = {c: i for i, c in enumerate(CLASSES)}
    data = [attach_gold(e, g, index) for e, g in zip(SentenceEncoder(tok, 3, 64).encode(sentences), gold)]
    assert len({len(e.input_ids) for e in data}) == 1 and len({len(e.span_word_start) for e in data}) == 1
    cfg = TrainSettings(epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=1e-3, mlm_weight=0.0)
    history = train(model, tok, data, cfg, progress=False)
    return model, history


def test_batch_4_equals_batch_2_with_2_accumulated(encoder_dir):
    """Every optimiser step of either run covers all four sentences (one batch of four, or two
    batches of two in either order), so the data per step is the same and the weights agree up
    to float32 summation order: 1e-5 absolute after three AdamW steps (the observed difference is
    ~1e-7; Adam divides by the gradient's running RMS, so a weight whose gradient is ~0 moves by
    a rounding-sensitive amount, which bounds the tolerance from below). Dropout is off and there
    is no masked LM, whose draws would differ per micro-batch."""
    whole, h_whole = _train(encoder_dir, batch_size=4, grad_accum=1)
    split, h_split = _train(encoder_dir, batch_size=2, grad_accum=2)
    fresh, _ = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64, dropout=0.0),
                           seed=0)
    moved = 0.0
    for (k, a), b, c in zip(whole.state_dict().items(), split.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=k)
        moved = max(moved, float((a - c).abs().max()))
    assert moved > 1e-3  # the runs trained (lr 1e-3, three steps)
    assert [r["steps"] for r in h_whole] == [1, 1, 1] and [r["steps"] for r in h_split] == [2, 2, 2]
    assert [r["optimiser_steps"] for r in h_split] == [1, 1, 1] and "optimiser_steps" not in h_whole[0]
    np.testing.assert_allclose([r["loss_source"] for r in h_whole], [r["loss_source"] for r in h_split], atol=1e-5)


def test_accumulation_differs_from_stepping_each_micro_batch(encoder_dir):
    """The same micro-batches without accumulation take twice the steps: a different model."""
    split, _ = _train(encoder_dir, batch_size=2, grad_accum=2)
    each, history = _train(encoder_dir, batch_size=2, grad_accum=1)
    assert "optimiser_steps" not in history[0]
    assert any(not torch.allclose(a, b, atol=1e-5) for a, b in zip(split.state_dict().values(), each.state_dict().values()))


def test_the_schedule_counts_optimiser_steps_and_each_epoch_ends_with_one():
    assert optimiser_steps([5, 5], 1) == 10
    assert optimiser_steps([5, 5], 2) == 6  # 2 + 2 + a group of one, per epoch
    assert optimiser_steps([5, 3], 4) == 3
    assert optimiser_steps([1], 8) == 1


def test_a_partial_last_group_steps_at_the_end_of_the_epoch(encoder_dir):
    _, history = _train(encoder_dir, batch_size=1, grad_accum=3, epochs=2)  # 4 micro-batches: groups of 3 and 1
    assert [(r["steps"], r["optimiser_steps"]) for r in history] == [(4, 2), (4, 2)]


def test_grad_accum_is_recorded_only_where_it_is_not_one():
    assert "grad_accum" not in TrainSettings().recorded()
    assert TrainSettings(grad_accum=4).recorded()["grad_accum"] == 4
