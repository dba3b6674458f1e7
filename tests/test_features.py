"""glode/features.py: words to sub-token pieces, candidate span tensors and case counts, gold labels
on spans, windows for sentences longer than the sequence length, cut words and lost spans."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from glode.features import SentenceEncoder, window_bounds
from glode.model import SpanModelConfig, build_model
from glode.spans import candidate_spans
from tests.gold_sentences import CLASSES, SENTENCES, encoded
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())


def test_alignment_maps_words_to_their_pieces(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    enc = SentenceEncoder(tok, 3, 64)
    for words, e in zip(SENTENCES, enc.encode(SENTENCES)):
        assert e.input_ids[0] == enc.cls_id and e.input_ids[-1] == enc.sep_id
        assert e.n_visible == e.n_words == len(words)
        singles = e.span_word_end - e.span_word_start == 1
        for ws, ts, te in zip(e.span_word_start[singles], e.span_tok_start[singles], e.span_tok_end[singles]):
            text = tok.decode(e.input_ids[ts : te + 1].tolist()).replace("\u2581", "").strip()
            assert text.replace(" ", "") == words[ws]
        # every span of width 1..3 inside the sentence, once
        n = len(words)
        assert len(e.span_word_start) == sum(min(3, n - s) for s in range(n))
        # case counts: one case class per word in the span
        np.testing.assert_array_equal(e.span_case_counts.sum(1), e.span_word_end - e.span_word_start)


def test_bare_space_piece_is_dropped_when_the_word_has_more(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    enc = SentenceEncoder(tok, 4, 64)
    assert enc.bare_space_id is not None
    for pieces in enc.word_pieces([["香", "港", "著", "名"], ["Berlin", "(", "1", ")"]]):
        for p in pieces:
            assert not (len(p) > 1 and p[0] == enc.bare_space_id)


def test_long_sentence_is_scored_in_windows(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    words = ["Anna", "lives", "in", "Berlin", "today"] * 16
    e = SentenceEncoder(tok, 4, 16).encode([words])[0]
    assert e.windows and len(e.windows) > 2
    assert e.n_visible == e.n_words == len(words) and e.lost_spans == [] and e.cut_words == 0
    # every candidate span of the whole sentence, once, in the usual order
    assert list(zip(e.span_word_start.tolist(), e.span_word_end.tolist())) == candidate_spans(len(words), 4)
    rows = np.concatenate([w.rows for w in e.windows])
    assert sorted(rows.tolist()) == list(range(len(e.span_word_start)))
    whole = SentenceEncoder(tok, 4, 512).encode([words])[0]
    np.testing.assert_array_equal(e.span_case_counts, whole.span_case_counts)
    for w in e.windows:
        assert len(w.input_ids) <= 16 and w.input_ids[0] == whole.input_ids[0] and w.input_ids[-1] == whole.input_ids[-1]
        np.testing.assert_array_equal(w.span_word_start, e.span_word_start[w.rows])
        for ws, we, ts, te in zip(w.span_word_start, w.span_word_end, w.span_tok_start, w.span_tok_end):
            text = tok.decode(w.input_ids[ts : te + 1].tolist()).replace("\u2581", "").replace(" ", "")
            assert text == "".join(words[ws:we])


def test_window_bounds_cover_every_span_and_progress():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = rng.integers(1, 6, size=int(rng.integers(1, 60))).tolist()
        budget, cap = int(rng.integers(5, 20)), int(rng.integers(1, 5))
        bounds = window_bounds(lengths, budget, cap - 1)
        assert bounds[0][0] == 0 and bounds[-1][1] == len(lengths)
        for (a, b), (a2, b2) in zip(bounds, bounds[1:]):
            assert a < a2 and b < b2
        for a, b in bounds:
            assert sum(lengths[a:b]) <= budget
        if budget >= 5 * (cap + 1):  # room for cap - 1 shared words plus the next word: nothing is lost
            assert all(b - a2 >= cap - 1 for (a, b), (a2, b2) in zip(bounds, bounds[1:]))
            for s, t in candidate_spans(len(lengths), cap):
                assert any(a <= s and t <= b for a, b in bounds)


def test_huge_words_are_cut_and_lost_spans_counted(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    enc = SentenceEncoder(tok, 3, 8)
    words = ["a" * 30, "Anna", "b" * 12, "Berlin"]  # one word beyond the 6-piece budget, windows of < 3 words
    (e,) = enc.encode([words])
    pieces = [len(p) for p in enc.word_pieces([words])[0]]
    assert e.cut_words == sum(n > 6 for n in pieces) >= 1 and e.lost_spans
    assert all(len(w.input_ids) <= 8 for w in e.units())
    scored = set(zip(e.span_word_start.tolist(), e.span_word_end.tolist()))
    assert scored.isdisjoint(e.lost_spans)
    assert scored | set(e.lost_spans) == set(candidate_spans(len(words), 3))
    assert {(i, i + 1) for i in range(len(words))} <= scored  # every word is still scored


def test_gold_labels_attached_to_matching_spans(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    e = encoded(tok)[2]
    labelled = {(int(s), int(t)): CLASSES[l] for s, t, l in zip(e.span_word_start, e.span_word_end, e.span_labels) if l}
    assert labelled == {(0, 3): "PER", (4, 5): "LOC"}


def test_caseless_words_add_no_case_counts(encoder_dir):
    from glode.features import word_case

    assert [word_case(w) for w in ["Berlin", "USA", "paris", "1990", "(", "جامعة", "北京"]] == [2, 0, 1, 3, 4, None, None]
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    e = SentenceEncoder(tok, 2, 64).encode([["جامعة", "Berlin"]])[0]
    counts = {(int(s), int(t)): c.tolist() for s, t, c in zip(e.span_word_start, e.span_word_end, e.span_case_counts)}
    assert counts[(0, 1)] == [0, 0, 0, 0, 0] and counts[(0, 2)] == [0, 0, 1, 0, 0]


def test_no_sequence_length_warning_for_windowed_sentences(caplog):
    """Sentences longer than the model's limit are windowed, so the tokenizer's 'indexing errors'
    warning describes something that does not happen and must not be printed."""
    from tests.synthetic import all_words
    from tests.tiny_encoder import build_tiny_encoder

    from glode.encoder import load_encoder
    from glode.features import SentenceEncoder

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _, tok = load_encoder(build_tiny_encoder(os.path.join(tmp, "enc"), words=all_words()))
    tok.model_max_length = 16
    words = (all_words() * 10)[:40]
    caplog.set_level(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    try:
        encoded = SentenceEncoder(tok, 4, 12).encode([words])
    finally:
        hf_logging.disable_propagation()
    assert len(encoded[0].units()) > 1  # it really was windowed
    assert not [r for r in caplog.records if "sequence length is longer" in r.getMessage()]
