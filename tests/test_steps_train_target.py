"""glode/steps/train_target.py (the train_target@rN node): the target soft labels a round trains on
(overlap losers and faint entity mass as hard O) and where a round's model starts (retrain.init)."""

from __future__ import annotations

import numpy as np
import pytest

from glode.errors import ParamError
from glode.features import EncodedSentence
from glode.model import SpanModelConfig, build_model, save_model
from glode.settings import RetrainSettings
from glode.steps.train_target import target_soft_labels
from tests.gold_sentences import CLASSES
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())


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


def test_chain_init_starts_r1_from_the_encoder_and_later_rounds_from_the_previous_model(encoder_dir, tmp_path):
    from glode.steps.train_target import round_start

    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    r0 = save_model(model, tok, tmp_path / "r0", encoder_dir, train_params={}, extra={"round": "r0"})
    r1 = save_model(model, tok, tmp_path / "r1", encoder_dir, train_params={}, extra={"round": "r1"})
    assert round_start("chain", r0) == "encoder" and round_start("chain", r1) == "previous"
    assert round_start("encoder", r1) == "encoder" and round_start("previous", r0) == "previous"
    with pytest.raises(ParamError, match="retrain.init"):
        RetrainSettings(init="restart")
