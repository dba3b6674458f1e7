"""What the stages write for a few rounds, for the tests of glode/labels.py, the report step and
glode/plots.py: two rounds' label tables over three target sentences, metrics and denoising
statistics per round, and per-epoch training records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from glode.atomic import write_json
from glode.conll import Sentence
from glode.label_table import write_labels


CLASSES = ["O", "PER", "ORG", "LOC"]
SENTENCES = [
    Sentence(["Anna", "lives", "in", "New", "York", "."], ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"], 1),
    Sentence(["Siemens", "and", "Ajax", "."], ["B-ORG", "O", "B-ORG", "O"], 8),
    Sentence(["the", "end"], ["O", "O"], 13),
]
GOLD = {(0, 0, 1): "PER", (0, 3, 5): "LOC", (1, 0, 1): "ORG", (1, 2, 3): "ORG"}

# (sentence, start, end, label, prob, prev_label, global_admitted, local_admitted)
R1 = [
    (0, 0, 1, "PER", 0.9, "PER", ["PER"], ["PER"]),
    (0, 3, 4, "O", 0.7, "O", [], []),
    (0, 3, 5, "LOC", 0.6, "ORG", ["LOC"], ["ORG"]),
    (1, 0, 1, "ORG", 0.8, "ORG", ["ORG"], ["ORG"]),
    (1, 2, 3, "LOC", 0.55, "LOC", ["LOC"], ["LOC"]),
]
R2 = [
    (0, 0, 1, "PER", 0.95, "PER", ["PER"], ["PER"]),
    (0, 3, 5, "LOC", 0.7, "LOC", ["LOC"], ["LOC"]),
    (0, 4, 5, "ORG", 0.5, "O", ["ORG"], []),  # overlaps New York, which has the higher probability
    (1, 2, 3, "ORG", 0.6, "LOC", ["ORG"], ["ORG"]),
    (2, 0, 1, "PER", 0.51, "O", [], ["PER"]),
]


def label_frame(rows, round_name: str) -> pd.DataFrame:
    recs = []
    for sid, s, e, label, prob, prev, g, loc in rows:
        dist = {c: (prob if c == label else (1 - prob) / 3) for c in CLASSES}
        recs.append(
            {
                "sentence_id": sid, "start": s, "end": e, "text": " ".join(SENTENCES[sid].tokens[s:e]),
                "round": round_name, "label": label, "prob": prob, **dist, "prev_label": prev,
                "global_admitted": g, "local_admitted": loc, "global_score": 0.5, "local_count": 3,
                "global_scores": [0.1] * 4, "local_counts": [1] * 4, "changed": label != prev,
                "gold": GOLD.get((sid, s, e), "O"),
            }
        )
    return pd.DataFrame(recs)


def write_round(root: Path, rows, round_name: str) -> None:
    write_labels(label_frame(rows, round_name), root / f"rounds/{round_name}/labels.parquet", CLASSES, round_name)


def metrics_dir(tmp_path, rounds=("r0", "r1", "r2")):
    m = tmp_path / "metrics"
    for i, r in enumerate(rounds):
        write_json(m / f"{r}.json", {"f1": 0.5 + i / 10, "precision": 0.6, "recall": 0.4, "span": {"f1": 0.55}})
        soft = {"f1": 0.4 + i / 100, "entity_mass_on_gold_entity": 0.7, "entity_mass_on_gold_o": 0.01,
                "gold_class_mass_on_gold_entity": 0.6, "brier": 0.05}
        den = {"pseudo_label": {"after": {"f1": 0.5, "precision": 0.6, "recall": 0.45}, "soft_after": soft}}
        if r != "r0":
            den["changed"] = {"o_to_entity": i, "entity_to_o": 2 * i, "type_swap": 3 * i}
            den["pseudo_label"]["soft_before"] = {"f1": 0.3, "brier": 0.06}
            den["soft_change"] = {"mass_moved": 10.0 * i}
        write_json(m / "denoise" / f"{r}.json", den)
    return m


def history(target: bool) -> list[dict]:
    """Per-epoch records as `glode.training.train` returns them (r0 trains without a target corpus)."""
    return [{"loss_source": 1.0 / e, "loss_target": 0.5 / e if target else 0.0, "loss_mlm": 9.0 - e,
             "epoch": e, "steps": 188, "dev_precision": 0.5, "dev_recall": 0.4 + e / 100, "dev_f1": 0.0}
            for e in (1, 2, 3)]
