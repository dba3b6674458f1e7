"""The ``initial_labels`` stage: Y0, the source model's soft labels of the target corpus (r0's label table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glode.atomic import write_json
from glode.corpus import encoding_stats, load_for_scoring, target_span_table
from glode.label_quality import soft_scores, span_prf
from glode.label_table import add_pseudo_label_scores, class_ids, initial_soft_labels, labels_frame, rows_to_store, write_labels
from glode.settings import DeviceSettings, EvaluateSettings


def initial_labels(model_dir: Path, tables_dir: Path, out_labels: Path, metrics_path: Path,
                   scoring: EvaluateSettings, progress: bool = True, device: DeviceSettings | None = None) -> dict:
    """r0's label table: kept non-O predictions keep their distribution, every other span is
    one-hot O; statistics with their pseudo-label scores where the target corpus has gold. The
    model runs on ``device`` (default settings: ``auto``). Among data-parallel processes
    (``glode.distributed.sharded_scoring``) each scores its share and rank 0 alone writes."""
    from glode.distributed import current_world

    device = device or DeviceSettings()
    main = current_world().main
    model, tokenizer, _, enc, target = load_for_scoring(model_dir, tables_dir, device)
    classes = model.config.classes
    t_enc = enc.encode([s.tokens for s in target])
    spans, _ = target_span_table(model, tokenizer, target, t_enc, scoring.batch_size, progress, with_features=False,
                                 precision=device.precision)
    Y = initial_soft_labels(spans, classes)
    gold = spans.gold.to_numpy(dtype=object)
    rows = rows_to_store(Y, Y, gold)
    if main:
        write_labels(labels_frame(spans, classes, "r0", Y, Y, rows), out_labels, classes, "r0")
    gold_ids = class_ids(gold, classes)
    y = Y.argmax(axis=1)
    summary = {"round": "r0", "spans": int(len(spans)), "label_rows": int(len(rows)),
               "per_class": {c: int(v) for c, v in zip(classes, np.bincount(y, minlength=len(classes)))},
               "encoding": encoding_stats(t_enc)}
    if device.precision != "fp32":  # labels scored in a reduced precision say so (fp32 metrics keep their bytes)
        summary["scoring_precision"] = device.precision
    if (gold_ids >= 0).any():
        add_pseudo_label_scores(summary, {"known": int((gold_ids >= 0).sum()), "after": span_prf(y, gold_ids),
                                          "soft_after": soft_scores(Y, gold_ids)})
    if main:
        write_json(metrics_path, summary)
    return summary
