"""glode/label_table.py: a round's sparse label table (rows, byte-stable writing, dense reading with
implicit one-hot O) and Y0 from the r0 model's span scores."""

from __future__ import annotations

import numpy as np
import pandas as pd

from glode.label_table import initial_soft_labels, labels_frame, read_labels_dense, write_labels


CLASSES = ["O", "PER", "LOC"]


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
