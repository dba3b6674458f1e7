"""Sparse label tables of one-word spans over three classes, with the local view's neighbour counts,
for the tests of glode/label_table.py (neighbour weights) and the train_target step
(retrain.span-weights: the local view's neighbour agreement as per-span loss weights, issue 36)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from glode.label_table import labels_frame, write_labels

CLASSES = ["O", "PER", "LOC"]


def one_word_spans(n: int) -> pd.DataFrame:
    """n one-word spans, two per sentence."""
    return pd.DataFrame({"sentence_id": np.arange(n, dtype=np.int64) // 2, "start": np.arange(n, dtype=np.int32) % 2,
                         "end": np.arange(n, dtype=np.int32) % 2 + 1, "text": [f"w{i}" for i in range(n)],
                         "gold": ["O"] * n})


def write_label_table(tmp_path, Y: np.ndarray, counts: np.ndarray | None, gold=None):
    """A round's label table (tmp_path/labels.parquet) with labels Y, and neighbour counts when given,
    over one_word_spans; returns (spans, path)."""
    spans = one_word_spans(len(Y))
    if gold is not None:
        spans["gold"] = gold
    rows = np.flatnonzero((Y[:, 0] < 1) | (spans.gold != "O").to_numpy())  # what rows_to_store keeps
    path = tmp_path / "labels.parquet"
    write_labels(labels_frame(spans, CLASSES, "r1", Y, Y, rows, n=counts), path, CLASSES, "r1")
    return spans, path
