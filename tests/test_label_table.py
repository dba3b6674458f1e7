"""glode/label_table.py: a round's sparse label table (rows, byte-stable writing, dense reading with
implicit one-hot O), Y0 from the r0 model's span scores, and the neighbour weights read from it
(retrain.span-weights: neighbours, issue 36, checked against weights worked out by hand)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glode.errors import GlodeError
from glode.label_table import initial_soft_labels, labels_frame, read_labels_dense, read_neighbour_weights, write_labels
from tests.label_rows import CLASSES, write_label_table


def test_label_table_round_trip_is_sparse_and_byte_stable(tmp_path):
    spans = pd.DataFrame({"sentence_id": [0, 0, 1, 1], "start": np.array([0, 1, 0, 2], np.int32),
                          "end": np.array([1, 2, 2, 3], np.int32), "text": ["a", "b", "c d", "e"],
                          "gold": ["PER", "O", "O", "O"]})
    Y_prev = np.array([[0.2, 0.8, 0], [1, 0, 0], [0.4, 0, 0.6], [1, 0, 0]], np.float32)
    Y_new = np.array([[0.1, 0.9, 0], [1, 0, 0], [0.7, 0, 0.3], [1, 0, 0]], np.float32)
    rows = np.array([0, 2])
    frame = labels_frame(spans, CLASSES, "r1", Y_prev, Y_new, rows)
    assert list(frame.label) == ["PER", "O"] and list(frame.changed) == [False, True]
    write_labels(frame, tmp_path / "a.parquet", CLASSES, "r1")
    write_labels(frame, tmp_path / "b.parquet", CLASSES, "r1")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    dense = read_labels_dense(tmp_path / "a.parquet", spans, CLASSES)
    np.testing.assert_allclose(dense[[0, 2]], Y_new[[0, 2]])
    np.testing.assert_array_equal(dense[[1, 3]], [[1, 0, 0], [1, 0, 0]])  # implicit one-hot O
    assert list(pd.read_parquet(tmp_path / "a.parquet").columns[:7]) == ["sentence_id", "start", "end", "text", "round", "label", "prob"]


def test_initial_soft_labels_keep_only_kept_entities():
    spans = pd.DataFrame({"O": [0.1, 0.2, 0.9], "PER": [0.9, 0.7, 0.1], "LOC": [0.0, 0.1, 0.0], "kept": [True, False, False]})
    Y = initial_soft_labels(spans, CLASSES)
    np.testing.assert_allclose(Y, [[0.1, 0.9, 0.0], [1, 0, 0], [1, 0, 0]])


def test_pseudo_entities_weigh_their_neighbour_agreement_over_their_class_mean(tmp_path):
    Y = np.array([[0.1, 0.9, 0], [0.2, 0.8, 0], [0.3, 0.7, 0], [0.4, 0, 0.6], [1, 0, 0], [0.9, 0.1, 0]], np.float32)
    # neighbours (of k=10) carrying each class; the spans' top classes: PER, PER, PER, LOC, O, O
    counts = np.array([[1, 9, 0], [4, 6, 0], [7, 3, 0], [8, 0, 2], [10, 0, 0], [2, 8, 0]])
    spans, path = write_label_table(tmp_path, Y, counts)
    w = read_neighbour_weights(path, spans, CLASSES)
    per_mean = (9 + 6 + 3) / 3  # 6: the mean PER count over the PER-topped spans
    expected = [1.0, 1.0, 3 / per_mean, 1.0, 1.0, 1.0]  # LOC: its only span is its class mean; O: always 1
    np.testing.assert_allclose(w, expected, rtol=1e-6)


def test_weights_do_not_depend_on_the_gold_rows_the_table_keeps(tmp_path):
    """A gold entity the pseudo labels call O has a row (for diagnostics); it must neither get a
    weight nor move its class's mean."""
    Y = np.array([[0.1, 0.9, 0], [0.2, 0.8, 0], [1, 0, 0]], np.float32)
    counts = np.array([[1, 9, 0], [7, 3, 0], [0, 10, 0]])
    spans, path = write_label_table(tmp_path, Y, counts)
    without = read_neighbour_weights(path, spans, CLASSES)
    spans_g, path_g = write_label_table(tmp_path, Y, counts, gold=["PER", "PER", "PER"])
    np.testing.assert_array_equal(read_neighbour_weights(path_g, spans_g, CLASSES), without)
    np.testing.assert_allclose(without, [1.0, 0.5, 1.0])


def test_weights_need_the_local_view(tmp_path):
    Y = np.array([[0.1, 0.9, 0], [1, 0, 0]], np.float32)
    spans, path = write_label_table(tmp_path, Y, None)
    with pytest.raises(GlodeError, match="denoise.use-local"):
        read_neighbour_weights(path, spans, CLASSES)
