"""The ``denoise@rN`` stage: a round's labels refined by the global and local views.

Reads the round's pseudo_label folder (span table and vectors, glode/pseudo_folder.py) and the
label table it starts from, runs one step of :func:`glode.denoising.update.denoise` (the array
math, in the ``glode.denoising`` package), and writes the refined label table
(glode/label_table.py) and the round's statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from glode.atomic import write_json
from glode.denoising.align import aligned_labels, class_weights
from glode.denoising.update import DenoiseInput, DenoiseResult, denoise
from glode.errors import GlodeError, ParamError
from glode.label_table import (add_pseudo_label_scores, class_ids, initial_soft_labels, labels_frame, read_labels_dense,
                               rows_to_store, write_labels)
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, TARGET_REPS, VectorFile, load_array, read_span_texts,
                                 read_spans)
from glode.rounds import round_number
from glode.settings import DenoiseSettings, IndexOptions


def ema_weight(round_name: str, m_start: float, m_step: float, m_min: float, update_from: int) -> float:
    """EMA weight m of a round: 1 (no update, the labels carried) before round ``update_from``,
    ``m_start`` in that round, ``m_step`` less each later round, floored at ``m_min``. Depends on
    the round alone, so adding a round never changes earlier ones."""
    n = round_number(round_name)
    if n < update_from:
        return 1.0
    return float(max(m_min, m_start - (n - update_from) * m_step))


def denoise_round(round_name: str, pseudo_dir: Path, prev_labels: Path, out_labels: Path, metrics_path: Path,
                  settings: DenoiseSettings) -> dict:
    """Refine a round's starting labels with the global and local views; write labels + stats.

    ``settings.start="labels"`` (GLoDe) starts from the previous round's refined labels;
    ``"model"`` from the previous model's own soft pseudo labels (Y0-style) of this round,
    which with both views off is plain self-training. ``settings.visits`` is how many update
    steps a label takes this round with the round's weight m: the reference updates a target
    span at every visit of its sentence to a training batch, with views that change little
    within an epoch, so n steps towards the same views are one step with weight m^n
    (docs/METHOD.md §7).
    """
    spans, classes = read_spans(pseudo_dir, text=False)
    Q, S, s_labels = _span_vectors(pseudo_dir, len(spans))
    Y, alignment = _starting_labels(spans, classes, prev_labels, s_labels, settings)
    m_round = ema_weight(round_name, settings.m_start, settings.m_step, settings.m_min, settings.update_from)
    m = m_round**settings.visits
    res = denoise(DenoiseInput(Q, Y, S, s_labels), settings, m, IndexOptions())
    gold = spans.gold.to_numpy(dtype=object)
    rows = rows_to_store(Y, res.Y_new, gold, res.G, res.L)
    frame = labels_frame(spans, classes, round_name, Y, res.Y_new, rows, res.g, res.G, res.n, res.L,
                         texts=read_span_texts(pseudo_dir, rows))
    write_labels(frame, out_labels, classes, round_name)
    summary = _round_summary(res, spans, classes, round_name, settings, m_round, m)
    if alignment:
        summary["align"] = alignment
    summary["label_rows"] = int(len(frame))
    write_json(metrics_path, summary)
    return summary


def _starting_labels(spans: pd.DataFrame, classes: list[str], prev_labels: Path, source_labels: np.ndarray,
                     settings: DenoiseSettings) -> tuple[np.ndarray, dict | None]:
    """The labels the round refines, and what class-share alignment did to them (None: off).

    ``start="labels"``: the previous round's label table; ``"model"``: the previous model's
    predictions (Y0), decoded again after ``denoise.align`` reweighted the entity classes."""
    if settings.start == "labels":
        if settings.align > 0:
            raise ParamError("denoise.align", "reweights the previous model's fresh predictions; it needs "
                             "denoise.start: model (with start: labels there are no fresh predictions to decode)")
        return read_labels_dense(prev_labels, spans, classes), None
    Y0 = initial_soft_labels(spans, classes)
    if not settings.align > 0:
        return Y0, None
    probs = spans[list(classes)].to_numpy(dtype=np.float32)
    weights = class_weights(probs, source_labels, settings.align)
    Y = aligned_labels(spans, probs, weights)
    count = lambda labels: {c: int(n) for c, n in zip(classes[1:], np.bincount(labels.argmax(1), minlength=len(classes))[1:])}  # noqa: E731
    return Y, {"power": settings.align, "weights": {c: float(w) for c, w in zip(classes[1:], weights[1:])},
               "entities_before": count(Y0), "entities_after": count(Y)}


def _span_vectors(pseudo_dir: Path, n_spans: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target vectors, source vectors, source gold ids) of a pseudo_label folder; the target's
    stay on disk (:class:`~glode.pseudo_folder.VectorFile`), read a chunk at a time."""
    Q = VectorFile(pseudo_dir / TARGET_REPS)
    if len(Q) != n_spans:
        raise GlodeError(f"{pseudo_dir}: {len(Q)} vectors for {n_spans} spans; rerun the pseudo_label stage")
    return Q, load_array(pseudo_dir / SOURCE_REPS), load_array(pseudo_dir / SOURCE_LABELS)


def _round_summary(res: DenoiseResult, spans: pd.DataFrame, classes: list[str], round_name: str,
                   settings: DenoiseSettings, m_round: float, m: float) -> dict:
    """The round's statistics: the step's summary, the settings that shaped it and, where the
    target corpus has gold, the pseudo-label scores before and after."""
    gold_ids = class_ids(spans.gold.to_numpy(dtype=object), classes)
    summary = res.summary(gold=gold_ids if (gold_ids >= 0).any() else None, class_names=classes)
    summary.update(round=round_name, start=settings.start, gate=settings.gate, m=m, k=settings.k,
                   local_cap=settings.local_cap)
    if settings.visits != 1:  # (absent at the default, so the default run's statistics read as before)
        summary.update(m_round=m_round, visits=settings.visits)
    if "gold" in summary:
        add_pseudo_label_scores(summary, summary.pop("gold"))
    return summary
