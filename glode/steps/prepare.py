"""The ``prepare`` stage: the four CoNLL inputs, read and validated, as parquet sentence tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from glode.atomic import atomic_dir, write_json
from glode.conll import read_conll_counts
from glode.errors import InputError
from glode.settings import DataSettings
from glode.tables import SENTENCES, sentences_frame, write_table

#: Table names written by the prepare stage.
TABLES = ("source_train", "source_dev", "target_unlabelled", "target_test")


def prepare_tables(files: dict[str, Path], data: DataSettings, out_dir: Path) -> dict:
    """Read and validate the four CoNLL inputs, write one parquet table each plus stats.json.

    Every file is read and checked before anything is written, and the tables folder is
    replaced as a whole, so bad input leaves the previous tables (or none). Entity types in
    ``data.ignore_labels`` are read as O; ``data.max_source_sentences`` and
    ``data.max_target_sentences`` cut the source training set and the target corpus.
    """
    limits = {"source_train": data.max_source_sentences, "target_unlabelled": data.max_target_sentences}
    frames, stats, warnings = {}, {}, []
    for name in TABLES:
        frames[name], stats[name], read_warnings = _read_table(files[name], data, limits.get(name, 0))
        warnings += read_warnings
    warnings += _check_label_coverage(files, stats, data.labels)
    with atomic_dir(out_dir) as tmp:
        for name, frame in frames.items():
            write_table(frame, tmp / f"{name}.parquet", kind=SENTENCES, extra_metadata={"source_file": str(files[name])})
        write_json(tmp / "stats.json", {"labels": data.labels, "ignore_labels": list(data.ignore_labels),
                                        "tables": stats, "warnings": warnings})
    return {**stats, "warnings": warnings}


def _read_table(path: Path, data: DataSettings, limit: int) -> tuple[pd.DataFrame, dict, list[str]]:
    """One corpus as a sentence frame (its first ``limit`` sentences when > 0), its counts and
    the reader's warnings."""
    sentences, counts = read_conll_counts(path, data.labels, data.ignore_labels)
    if limit > 0:
        sentences = sentences[:limit]
    frame = sentences_frame(sentences)
    per_type = {lab: 0 for lab in data.labels}
    for spans in frame["spans"]:
        for sp in spans:
            per_type[sp["label"]] += 1
    stats = {
        "file": str(path),
        "sentences": len(sentences),
        "tokens": int(sum(len(s.tokens) for s in sentences)),
        "entities": int(sum(per_type.values())),
        "per_type": per_type,
        "ignored_entities": counts["ignored"],
    }
    return frame, stats, counts["warnings"]


def _check_label_coverage(files: dict[str, Path], stats: dict[str, dict], labels: list[str]) -> list[str]:
    """Refuse an empty target corpus and a label the source training data never shows (the
    model could not learn it); warn about one the target test set never shows (its
    predictions can only be false positives there)."""
    if not stats["target_unlabelled"]["sentences"]:
        raise InputError(files["target_unlabelled"], None, "the target corpus is empty after data.max-target-sentences; "
                         "set it to 0 (all) or a positive number")
    unlearnable = [lab for lab in labels if not stats["source_train"]["per_type"][lab]]
    if unlearnable:
        raise InputError(files["source_train"], None, f"entity types {unlearnable} of data.labels never occur in the "
                         "source training data (after data.max-source-sentences), so the model cannot learn them; "
                         "remove them from data.labels or use source data that has them")
    return [f"{files['target_test']}: no {lab} entities in the target test set; the model's {lab} predictions "
            "there can only be false positives (a label set that differs between source and target? list the "
            "type under data.ignore-labels to drop it)"
            for lab in labels if not stats["target_test"]["per_type"][lab]]
