"""glode/steps/train_target.py (the train_target@rN node): the target soft labels a round trains on
(overlap losers and faint entity mass as hard O)."""

from __future__ import annotations

import numpy as np

from glode.features import EncodedSentence
from glode.steps.train_target import target_soft_labels


def _sentence(spans):
    s = np.array([a for a, _ in spans])
    e = np.array([b for _, b in spans])
    return EncodedSentence(np.zeros(3, np.int64), 4, 4, s, e, s, e, np.zeros((len(spans), 5), np.float32))


def test_target_soft_labels_turn_overlap_losers_into_hard_o():
    enc = _sentence([(0, 1), (0, 2), (1, 2), (3, 4)])
    Y = np.array([[0.3, 0.7, 0.0], [0.1, 0.0, 0.9], [0.2, 0.8, 0.0], [1.0, 0.0, 0.0]], np.float32)
    out = target_soft_labels(enc, Y)
    np.testing.assert_array_equal(out[1], Y[1])  # best entity keeps its distribution
    np.testing.assert_array_equal(out[0], [1, 0, 0])  # overlaps (0,2): hard O
    np.testing.assert_array_equal(out[2], [1, 0, 0])
    np.testing.assert_array_equal(out[3], Y[3])
    np.testing.assert_array_equal(Y[0], np.array([0.3, 0.7, 0.0], np.float32))  # input not modified


def test_harden_o_turns_faint_entity_mass_on_o_topped_labels_into_hard_o():
    """retrain.harden-o: an O-topped label with entity mass at most the threshold trains as one-hot O;
    more mass, or an entity top class, keeps its distribution; 0 changes nothing."""
    enc = _sentence([(0, 1), (1, 2), (2, 3), (3, 4)])
    Y = np.array([[0.9, 0.1, 0.0], [0.6, 0.2, 0.2], [0.7, 0.0, 0.3], [0.4, 0.6, 0.0]], np.float32)
    out = target_soft_labels(enc, Y, harden_o=0.3)
    np.testing.assert_array_equal(out[0], [1, 0, 0])  # 0.1 <= 0.3
    np.testing.assert_array_equal(out[1], Y[1])  # 0.4 > 0.3
    np.testing.assert_array_equal(out[2], [1, 0, 0])  # 0.3 <= 0.3
    np.testing.assert_array_equal(out[3], Y[3])  # an entity top class is never hardened
    np.testing.assert_array_equal(target_soft_labels(enc, Y), Y)
