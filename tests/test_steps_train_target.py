"""glode/steps/train_target.py (the train_target@rN node): the target soft labels a round trains on
(overlap losers and faint entity mass as hard O; per-span weights from the local view's
neighbours, retrain.span-weights) and where a round's model starts (retrain.init)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glode.errors import ParamError
from glode.features import EncodedSentence
from glode.model import SpanModelConfig, build_model, save_model
from glode.pseudo_folder import SPANS_FILE, SPANS_KIND, write_pseudo_manifest
from glode.settings import RetrainSettings
from glode.steps.train_target import attach_target_labels, target_soft_labels
from glode.tables import write_table
from glode.training import reference_target_loss, soft_cross_entropy
from tests.label_rows import CLASSES, write_label_table
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


def test_a_weighted_row_scales_both_target_losses_by_its_weight(tmp_path):
    """attach_target_labels scales pseudo entities' rows; both losses are linear in the label."""
    Y = np.array([[0.1, 0.9, 0], [1, 0, 0], [0.3, 0.7, 0], [1, 0, 0]], np.float32)
    counts = np.array([[1, 9, 0], [10, 0, 0], [7, 3, 0], [10, 0, 0]])
    spans, path = write_label_table(tmp_path, Y, counts)
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    scored = spans.copy()
    for c, name in enumerate(CLASSES):
        scored[name] = Y[:, c]
    scored["label"] = np.array(CLASSES, dtype=object)[Y.argmax(1)]
    scored["kept"] = True
    write_table(scored, pseudo / SPANS_FILE, SPANS_KIND, extra_metadata={"classes": CLASSES, "model_round": "r0"})
    write_pseudo_manifest(pseudo, CLASSES)

    def sentence():
        s = np.array([0, 1])
        return EncodedSentence(np.zeros(3, np.int64), 2, 2, s, s + 1, s, s + 1, np.zeros((2, 5), np.float32))

    plain, weighted = [sentence(), sentence()], [sentence(), sentence()]
    attach_target_labels(plain, pseudo, path, CLASSES, harden_o=0.0, span_weights="none")
    attach_target_labels(weighted, pseudo, path, CLASSES, harden_o=0.0, span_weights="neighbours")
    w = np.array([1.0, 1.0, 0.5, 1.0])  # PER mean (9 + 3) / 2 = 6: spans 0 and 2 weigh min(1, 9/6), 3/6
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    for loss in (soft_cross_entropy, reference_target_loss):
        y_plain = torch.from_numpy(np.concatenate([e.span_soft for e in plain]))
        y_weighted = torch.from_numpy(np.concatenate([e.span_soft for e in weighted]))
        per_span = torch.stack([loss(logits[i : i + 1], y_plain[i : i + 1]) for i in range(4)])
        assert loss(logits, y_weighted, reduction="sum").item() == pytest.approx(float((per_span * torch.tensor(w)).sum()), rel=1e-5)
