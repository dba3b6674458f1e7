"""glode/label_quality.py: labels against gold (hard and soft span P/R/F1, Brier) and the mass a
denoising step moves."""

from __future__ import annotations

import numpy as np
import pytest

from glode.label_quality import label_movement, soft_scores, span_prf
from tests.denoising_fixture import O, PER, one_hot


def test_soft_scores_equal_hard_scores_on_one_hot_labels():
    y = np.array([1, 2, 0, 1, 0, 3])
    gold = np.array([1, 1, 0, 0, -1, 3])
    soft = soft_scores(one_hot(y, 4), gold)
    hard = span_prf(y, gold)
    for key in ("precision", "recall", "f1"):
        assert soft[key] == pytest.approx(hard[key])
    assert soft["brier"] == pytest.approx(2 * 2 / 5)  # two wrong spans of five known, 2 each


def test_soft_scores_see_mass_the_hard_scores_do_not():
    gold = np.array([1, 0, 0, 0])
    Y = one_hot(np.array([1, 0, 0, 0]), 4)
    Y_soft = Y.copy()
    Y_soft[1] = [0.8, 0.2, 0.0, 0.0]  # an O span picks up 0.2 PER: same argmax
    Y_soft[0] = [0.1, 0.6, 0.3, 0.0]  # the entity keeps PER, less surely
    assert span_prf(Y_soft.argmax(1), gold) == span_prf(Y.argmax(1), gold)
    s = soft_scores(Y_soft, gold)
    assert s["entity_mass_on_gold_o"] == pytest.approx(0.2 / 3)
    assert s["entity_mass_on_gold_entity"] == pytest.approx(0.9)
    assert s["gold_class_mass_on_gold_entity"] == pytest.approx(0.6)
    assert s["precision"] == pytest.approx(0.6 / (0.9 + 0.2)) and s["recall"] == pytest.approx(0.6)
    assert s["brier_on_gold_entity"] == pytest.approx(0.01 + 0.16 + 0.09)
    assert s["brier"] > soft_scores(Y, gold)["brier"] == 0.0


def test_label_movement_counts_soft_mass_not_only_flips():
    Y = one_hot(np.array([O, O, PER]), 4)
    Y_new = np.array([[0.8, 0.2, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], np.float32)
    mv = label_movement(Y, Y_new, ["O", "PER", "LOC", "ORG"])
    assert mv["mass_moved"] == pytest.approx(1.2) and mv["spans_moved"] == 2
    assert mv["o_to_entity_mass"] == pytest.approx(0.2) and mv["entity_to_o_mass"] == 0.0
    assert mv["net_per_class"] == pytest.approx({"O": -0.2, "PER": -0.8, "LOC": 1.0, "ORG": 0.0})


def test_pseudo_label_prf_hand_case():
    y = np.array([1, 2, 0, 1, 0])
    gold = np.array([1, 1, 0, 0, -1])
    s = span_prf(y, gold)
    assert (s["correct"], s["predicted"], s["gold"]) == (1, 3, 2)
    assert s["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
