"""Class-share alignment (`denoise.align`): entity classes the model under-predicts against the
source's shares gain weight, and the labels are decoded again with overlap resolution."""

from __future__ import annotations

import numpy as np
import pandas as pd

from glode.denoising.align import aligned_labels, class_weights

CLASSES = ["O", "PER", "MISC"]


def test_weights_follow_the_source_shares_over_the_predicted_ones():
    probs = np.array([[0.5, 0.4, 0.1], [0.5, 0.4, 0.1]], np.float32)  # predicted entity shares 0.8 / 0.2
    source = np.array([0, 0, 0, 1, 2])  # gold entity shares 0.5 / 0.5
    w = class_weights(probs, source, power=1.0)
    np.testing.assert_allclose(w, [1.0, 0.5 / 0.8, 0.5 / 0.2])
    np.testing.assert_allclose(class_weights(probs, source, power=0.5), [1.0, (0.5 / 0.8) ** 0.5, (0.5 / 0.2) ** 0.5])
    assert class_weights(probs, np.array([0, 0, 1]), 1.0)[2] == 1.0  # a class the source never shows keeps 1


def test_aligned_labels_retype_and_resolve_overlaps_again():
    """Span 0 is PER by a hair; MISC's weight makes it MISC. Spans 1 and 2 overlap: after
    reweighting span 2 (MISC) outscores span 1 (PER) and wins the overlap."""
    spans = pd.DataFrame({"sentence_id": [0, 1, 1, 2], "start": [0, 0, 1, 0], "end": [1, 2, 3, 1]})
    probs = np.array([[0.1, 0.46, 0.44], [0.2, 0.7, 0.1], [0.3, 0.1, 0.6], [0.9, 0.05, 0.05]], np.float32)
    plain = aligned_labels(spans, probs, np.ones(3))
    assert plain.argmax(1).tolist() == [1, 1, 0, 0]  # span 2 loses the overlap to span 1 (0.7 > 0.6)
    Y = aligned_labels(spans, probs, np.array([1.0, 0.5, 2.0]))
    assert Y.argmax(1).tolist() == [2, 0, 2, 0]
    np.testing.assert_allclose(Y.sum(1), 1.0, rtol=1e-6)
    assert Y[3].tolist() == [1.0, 0.0, 0.0]
    P = probs[2] * np.array([1.0, 0.5, 2.0])
    np.testing.assert_allclose(Y[2], P / P.sum(), rtol=1e-6)


def test_row_order_does_not_matter():
    spans = pd.DataFrame({"sentence_id": [1, 0, 1], "start": [0, 0, 1], "end": [2, 1, 3]})
    probs = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.1, 0.6]], np.float32)
    Y = aligned_labels(spans, probs, np.ones(3))
    assert Y.argmax(1).tolist() == [1, 1, 0]  # sentence 1's two spans overlap: the stronger one is kept
