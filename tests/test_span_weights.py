"""retrain.span-weights: neighbours: the local view's neighbour agreement as per-span loss
weights (issue 36, beyond the paper), checked against weights worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from glode.errors import GlodeError
from glode.features import EncodedSentence
from glode.label_table import labels_frame, read_neighbour_weights, write_labels
from glode.pseudo_folder import SPANS_FILE, SPANS_KIND, write_pseudo_manifest
from glode.steps.train_target import attach_target_labels
from glode.tables import write_table
from glode.training import reference_target_loss, soft_cross_entropy

CLASSES = ["O", "PER", "LOC"]


def _spans(n: int) -> pd.DataFrame:
    """n one-word spans, two per sentence."""
    return pd.DataFrame({"sentence_id": np.arange(n, dtype=np.int64) // 2, "start": np.arange(n, dtype=np.int32) % 2,
                         "end": np.arange(n, dtype=np.int32) % 2 + 1, "text": [f"w{i}" for i in range(n)],
                         "gold": ["O"] * n})


def _table(tmp_path, Y: np.ndarray, counts: np.ndarray | None, gold=None):
    spans = _spans(len(Y))
    if gold is not None:
        spans["gold"] = gold
    rows = np.flatnonzero((Y[:, 0] < 1) | (spans.gold != "O").to_numpy())  # what rows_to_store keeps
    path = tmp_path / "labels.parquet"
    write_labels(labels_frame(spans, CLASSES, "r1", Y, Y, rows, n=counts), path, CLASSES, "r1")
    return spans, path


def test_pseudo_entities_weigh_their_neighbour_agreement_over_their_class_mean(tmp_path):
    Y = np.array([[0.1, 0.9, 0], [0.2, 0.8, 0], [0.3, 0.7, 0], [0.4, 0, 0.6], [1, 0, 0], [0.9, 0.1, 0]], np.float32)
    # neighbours (of k=10) carrying each class; the spans' top classes: PER, PER, PER, LOC, O, O
    counts = np.array([[1, 9, 0], [4, 6, 0], [7, 3, 0], [8, 0, 2], [10, 0, 0], [2, 8, 0]])
    spans, path = _table(tmp_path, Y, counts)
    w = read_neighbour_weights(path, spans, CLASSES)
    per_mean = (9 + 6 + 3) / 3  # 6: the mean PER count over the PER-topped spans
    expected = [1.0, 1.0, 3 / per_mean, 1.0, 1.0, 1.0]  # LOC: its only span is its class mean; O: always 1
    np.testing.assert_allclose(w, expected, rtol=1e-6)


def test_weights_do_not_depend_on_the_gold_rows_the_table_keeps(tmp_path):
    """A gold entity the pseudo labels call O has a row (for diagnostics); it must neither get a
    weight nor move its class's mean."""
    Y = np.array([[0.1, 0.9, 0], [0.2, 0.8, 0], [1, 0, 0]], np.float32)
    counts = np.array([[1, 9, 0], [7, 3, 0], [0, 10, 0]])
    spans, path = _table(tmp_path, Y, counts)
    without = read_neighbour_weights(path, spans, CLASSES)
    spans_g, path_g = _table(tmp_path, Y, counts, gold=["PER", "PER", "PER"])
    np.testing.assert_array_equal(read_neighbour_weights(path_g, spans_g, CLASSES), without)
    np.testing.assert_allclose(without, [1.0, 0.5, 1.0])


def test_weights_need_the_local_view(tmp_path):
    Y = np.array([[0.1, 0.9, 0], [1, 0, 0]], np.float32)
    spans, path = _table(tmp_path, Y, None)
    with pytest.raises(GlodeError, match="denoise.use-local"):
        read_neighbour_weights(path, spans, CLASSES)


def test_a_weighted_row_scales_both_target_losses_by_its_weight(tmp_path):
    """attach_target_labels scales pseudo entities' rows; both losses are linear in the label."""
    Y = np.array([[0.1, 0.9, 0], [1, 0, 0], [0.3, 0.7, 0], [1, 0, 0]], np.float32)
    counts = np.array([[1, 9, 0], [10, 0, 0], [7, 3, 0], [10, 0, 0]])
    spans, path = _table(tmp_path, Y, counts)
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


def test_the_file_check_refuses_weights_without_the_local_view(tmp_path):
    from glode.params import check_params
    from tests.params_fixture import default_params

    params = default_params()
    params["retrain"]["span-weights"] = "neighbours"
    assert not [p for p in check_params(params, tmp_path) if p.startswith("retrain.")]
    params["denoise"]["use-local"] = False
    assert [p for p in check_params(params, tmp_path) if p.startswith("retrain.span-weights")] == [
        "retrain.span-weights: 'neighbours' weighs spans by the local view's neighbour counts; it needs "
        "denoise.use-local: true"]
