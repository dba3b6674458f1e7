"""A round's label table (``rounds/rN/labels.parquet``): its schema, writing and reading.

Label tables are sparse: one row per span that is or might be an entity (non-O mass in its old
or new label, admitted as an entity by a view, or a gold entity); every candidate span without
a row is one-hot ``O``. The initial_labels and denoise stages write them, denoise (the previous
round's) and train_target read them densely; ``glode labels`` (glode/labels.py) inspects them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from glode.errors import GlodeError
from glode.tables import LABELS_KIND, read_table, write_table


def labels_schema(classes: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [
            ("sentence_id", pa.int64()),
            ("start", pa.int32()),
            ("end", pa.int32()),
            ("text", pa.string()),
            ("round", pa.string()),
            ("label", pa.string()),
            ("prob", pa.float32()),
            *[(c, pa.float32()) for c in classes],
            ("prev_label", pa.string()),
            ("global_admitted", pa.list_(pa.string())),
            ("local_admitted", pa.list_(pa.string())),
            ("global_score", pa.float32()),
            ("local_count", pa.int32()),
            ("global_scores", pa.list_(pa.float32())),
            ("local_counts", pa.list_(pa.int32())),
            ("changed", pa.bool_()),
            ("gold", pa.string()),
        ]
    )


def labels_frame(
    spans: pd.DataFrame,
    classes: Sequence[str],
    round_name: str,
    Y_prev: np.ndarray,
    Y_new: np.ndarray,
    rows: np.ndarray,
    g: np.ndarray | None = None,
    G: np.ndarray | None = None,
    n: np.ndarray | None = None,
    L: np.ndarray | None = None,
    texts: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The user-facing label table for the selected span ``rows``; ``texts`` are the rows' span
    texts where ``spans`` was read without them."""
    names = np.array(classes, dtype=object)
    sel = spans.iloc[rows].reset_index(drop=True)
    Yn, Yp = Y_new[rows], Y_prev[rows]
    y_new, y_prev = Yn.argmax(axis=1), Yp.argmax(axis=1)
    out = pd.DataFrame(
        {
            "sentence_id": sel.sentence_id.astype(np.int64),
            "start": sel.start.astype(np.int32),
            "end": sel.end.astype(np.int32),
            "text": sel.text if texts is None else pd.Series(list(texts), dtype=object),
            "round": round_name,
            "label": names[y_new],
            "prob": Yn[np.arange(len(rows)), y_new].astype(np.float32),
        }
    )
    for c, name in enumerate(classes):
        out[name] = Yn[:, c].astype(np.float32)
    out["prev_label"] = names[y_prev]

    def admitted(mask):
        if mask is None:
            return pd.Series([[] for _ in rows], dtype=object)
        return pd.Series([list(names[m]) for m in mask[rows]], dtype=object)

    out["global_admitted"] = admitted(G)
    out["local_admitted"] = admitted(L)
    idx = np.arange(len(rows))
    out["global_score"] = (g[rows][idx, y_new] if g is not None else np.full(len(rows), np.nan)).astype(np.float32)
    out["local_count"] = (n[rows][idx, y_new] if n is not None else np.zeros(len(rows))).astype(np.int32)
    out["global_scores"] = pd.Series([r.astype(np.float32).tolist() for r in g[rows]] if g is not None else [[] for _ in rows], dtype=object)
    out["local_counts"] = pd.Series([r.astype(np.int32).tolist() for r in n[rows]] if n is not None else [[] for _ in rows], dtype=object)
    out["changed"] = y_new != y_prev
    out["gold"] = sel.gold.values
    return out


def write_labels(frame: pd.DataFrame, path: Path, classes: Sequence[str], round_name: str) -> None:
    write_table(frame, path, LABELS_KIND, extra_metadata={"classes": list(classes), "round": round_name},
                schema=labels_schema(classes))


def read_labels_dense(path: Path, spans: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Soft labels for every span row of ``spans`` (one-hot O where the label table has no row)."""
    table = read_table(path, LABELS_KIND)
    stored = table.attrs["glode"].get("classes")
    if stored is not None:
        if json.loads(stored) != list(classes):
            raise GlodeError(f"{path}: labels for classes {json.loads(stored)}, but the model has {list(classes)}; "
                             "rerun the pipeline from the prepare stage")
    Y = np.zeros((len(spans), len(classes)), dtype=np.float32)
    Y[:, 0] = 1.0
    if len(table):
        pos, found = _span_positions(spans, table)
        Y[pos[found]] = table.loc[found, list(classes)].to_numpy(dtype=np.float32)
    return Y


def _span_positions(spans: pd.DataFrame, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Where each label-table row's span (sentence, start, end) is in ``spans``, and which rows were found."""
    key = pd.MultiIndex.from_arrays([spans.sentence_id, spans.start, spans.end])
    pos = key.get_indexer(pd.MultiIndex.from_arrays([rows.sentence_id, rows.start.astype(np.int32), rows.end.astype(np.int32)]))
    return pos, pos >= 0



def read_neighbour_weights(path: Path, spans: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Per-span loss weights from the local view's neighbour agreement (``retrain.span-weights:
    neighbours``; the views as instance weights, as CoLaDa weights its tokens, instead of or
    besides relabelling).

    A span whose top class is entity class c weighs ``min(1, a / mean_c)``, ``a`` being how many
    of its k neighbours carry c (the table's ``local_count``) and ``mean_c`` that count's mean
    over every span whose top class is c: a pseudo entity its neighbourhood agrees with as much as
    its class's average trains at full weight, one in a neighbourhood of other classes at less.
    Spans whose top class is O weigh 1: the memory bank keeps only a sample of O spans, so their
    neighbour counts say little. Every span with entity mass has a row in the table whatever the
    gold, so no weight depends on the gold labels stored for diagnostics."""
    table = read_table(path, LABELS_KIND)
    weights = np.ones(len(spans), dtype=np.float32)
    entity = table[table.label != classes[0]]
    if not len(entity):
        return weights
    if any(len(c) == 0 for c in entity.local_counts):
        raise GlodeError(f"{path}: no neighbour counts (the round's denoising ran without the local view); "
                         "retrain.span-weights: neighbours needs denoise.use-local: true")
    agree = entity.local_count.to_numpy(dtype=np.float64)
    mean = entity.groupby("label").local_count.transform("mean").to_numpy(dtype=np.float64)
    w = np.minimum(1.0, np.divide(agree, mean, out=np.ones_like(agree), where=mean > 0))
    pos, found = _span_positions(spans, entity)
    weights[pos[found]] = w[found]
    return weights


def rows_to_store(Y_prev: np.ndarray, Y_new: np.ndarray, gold, G=None, L=None) -> np.ndarray:
    """The spans a sparse table keeps: entity mass in the old or new label, admitted as an entity
    by a view, or a gold entity."""
    eps = 1e-6
    keep = (Y_prev[:, 0] < 1 - eps) | (Y_new[:, 0] < 1 - eps)
    if G is not None:
        keep |= G[:, 1:].any(axis=1)
    if L is not None:
        keep |= L[:, 1:].any(axis=1)
    if gold is not None:
        keep |= np.array([g is not None and g != "O" for g in gold])
    return np.flatnonzero(keep)


def initial_soft_labels(spans: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Y0: kept non-O predictions keep their distribution; every other span is one-hot O."""
    probs = spans[list(classes)].to_numpy(dtype=np.float32)
    Y = np.zeros_like(probs)
    Y[:, 0] = 1.0
    kept = spans.kept.to_numpy(dtype=bool)
    Y[kept] = probs[kept]
    return Y


def class_ids(labels, classes: Sequence[str]) -> np.ndarray:
    """Class ids of gold names, -1 for unknown (None)."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(g, -1) if g is not None else -1 for g in labels], dtype=np.int64)


def add_pseudo_label_scores(summary: dict, scores: dict) -> None:
    """Put a round's pseudo-label scores against gold (``after``: hard, ``soft_after``: soft)
    into its statistics, with the two headline F1s the report plots."""
    summary["pseudo_label"] = scores
    summary["pseudo_label_f1"] = scores["after"]["f1"]
    summary["pseudo_label_soft_f1"] = scores["soft_after"]["f1"]
