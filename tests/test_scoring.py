"""glode/scoring.py: span scores of encoded sentences (a long sentence window by window) and the
entity spans that survive greedy overlap resolution."""

from __future__ import annotations

import numpy as np
import pytest

from glode.features import SentenceEncoder, window_bounds
from glode.model import SpanModelConfig, build_model
from glode.scoring import kept_entity_mask, score_spans
from tests.gold_sentences import CLASSES, encoded
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())


def test_window_scores_equal_scoring_the_window_alone(encoder_dir):
    """Each span's probabilities come from the window it was assigned to, and no span is left unscored."""
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=20), seed=0)
    enc = SentenceEncoder(tok, 3, 20)
    words = ["Jan", "de", "Vries", "visited", "Rotterdam", "and", "Madrid", "."] * 6
    (e,) = enc.encode([words])
    (sc,) = score_spans(model, [e], tok.pad_token_id, batch_size=2, progress=False)
    assert sc.probs.shape == (len(e.span_word_start), len(CLASSES))
    np.testing.assert_allclose(sc.probs.sum(1), 1, atol=1e-5)
    for w, (a, b) in zip(e.windows, window_bounds([len(p) for p in enc.word_pieces([words])[0]], 18, 2)):
        (alone,) = enc.encode([words[a:b]])
        assert alone.windows is None
        (ref,) = score_spans(model, [alone], tok.pad_token_id, progress=False)
        index = {(int(s) + a, int(t) + a): i for i, (s, t) in enumerate(zip(alone.span_word_start, alone.span_word_end))}
        for row in w.rows:
            key = (int(e.span_word_start[row]), int(e.span_word_end[row]))
            np.testing.assert_allclose(sc.probs[row], ref.probs[index[key]], rtol=1e-5, atol=1e-6)


def test_kept_entity_mask_follows_overlap_resolution(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    e = encoded(tok)[0]
    probs = np.zeros((len(e.span_word_start), 4), dtype=np.float32)
    probs[:, 0] = 1.0
    spans = list(zip(e.span_word_start.tolist(), e.span_word_end.tolist()))
    for (s, t), label, p in [((3, 5), 3, 0.9), ((4, 5), 3, 0.8), ((0, 1), 1, 0.7)]:
        i = spans.index((s, t))
        probs[i] = 0
        probs[i, label], probs[i, 0] = p, 1 - p
    mask = kept_entity_mask(e, probs)
    assert {spans[i] for i in np.nonzero(mask)[0]} == {(3, 5), (0, 1)}
