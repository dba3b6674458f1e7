"""The ``report`` stage: a row per round across the pipeline's metrics, flips and the last round's
confusion rows, for `dvc plots` and quick reading; and the few scores that are DVC metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from glode.atomic import atomic_path, write_json


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


FLIP_FIELDS = ("flips_o_to_entity", "flips_entity_to_o", "flips_type_swap")


def model_names(params_path: Path) -> list[str]:
    """The evaluated models of ``params.yaml`` (its ``models`` keys: r0 and each round), by round
    number. The report lists these and no other: DVC leaves the metrics of rounds since removed
    from the chain in ``metrics/``, and they must not come back as rows."""
    import yaml

    from glode.errors import ParamError

    models = (yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}).get("models")
    if not isinstance(models, dict) or not models:
        raise ParamError("models", f"{params_path} has no 'models' mapping (r0 and the rounds)")
    bad = [name for name in models if not (isinstance(name, str) and re.fullmatch(r"r\d+", name))]
    if bad:
        raise ParamError("models", f"{params_path}: model names must look like r0, r1, ...; got {bad[0]!r}")
    return sorted(models, key=lambda n: int(n[1:]))


def round_rows(metrics_dir: Path, names: list[str] | None = None) -> list[dict]:
    """One row per round of ``names`` (default: every rN.json and denoise/rN.json found in
    ``metrics_dir``), by round number."""
    if names is None:
        found = {p.stem for p in metrics_dir.glob("r*.json")} | {p.stem for p in (metrics_dir / "denoise").glob("r*.json")}
        names = [n for n in found if re.fullmatch(r"r\d+", n)]
    rows = []
    for name in sorted(names, key=lambda n: int(n[1:])):
        test = _read(metrics_dir / f"{name}.json") or {}
        den = _read(metrics_dir / "denoise" / f"{name}.json") or {}
        pl = den.get("pseudo_label", {})
        changed = den.get("changed", {})
        soft, soft_before = pl.get("soft_after", {}), pl.get("soft_before", {})
        rows.append(
            {
                "round": name,
                "round_index": int(name[1:]),
                "test_f1": test.get("f1"),
                "test_precision": test.get("precision"),
                "test_recall": test.get("recall"),
                "test_span_f1": (test.get("span") or {}).get("f1"),
                "pseudo_label_f1": pl.get("after", {}).get("f1"),
                "pseudo_label_precision": pl.get("after", {}).get("precision"),
                "pseudo_label_recall": pl.get("after", {}).get("recall"),
                "pseudo_label_f1_before_denoising": pl.get("before", {}).get("f1"),
                "flips_o_to_entity": changed.get("o_to_entity"),
                "flips_entity_to_o": changed.get("entity_to_o"),
                "flips_type_swap": changed.get("type_swap"),
                "pseudo_label_soft_f1": soft.get("f1"),
                "pseudo_label_soft_f1_before_denoising": soft_before.get("f1"),
                "entity_mass_on_gold_entity": soft.get("entity_mass_on_gold_entity"),
                "entity_mass_on_gold_o": soft.get("entity_mass_on_gold_o"),
                "gold_class_mass_on_gold_entity": soft.get("gold_class_mass_on_gold_entity"),
                "brier": soft.get("brier"),
                "brier_before_denoising": soft_before.get("brier"),
                "soft_mass_moved": (den.get("soft_change") or {}).get("mass_moved"),
            }
        )
    return rows


def write_round_report(metrics_dir: Path, out: Path, names: list[str] | None = None) -> list[dict]:
    rows = round_rows(metrics_dir, names)
    write_json(out, rows)
    return rows


# The scores a person compares across experiments, per model, as (metrics key, round report
# field): the target test scores, named as in metrics/rN.json, and the quality of the pseudo labels
# the round trained on (r0: its own zero-shot labels of the target corpus). Everything else stays
# in reports/rounds.json and metrics/.
HEADLINE = (("f1", "test_f1"), ("precision", "test_precision"), ("recall", "test_recall"),
            ("span_f1", "test_span_f1"), ("pseudo_label_f1", "pseudo_label_f1"),
            ("pseudo_label_soft_f1", "pseudo_label_soft_f1"))


def summary_metrics(rows: list[dict]) -> dict:
    """The pipeline's DVC metrics (``reports/metrics.json``): the last round's `HEADLINE` scores
    at the top level, its test F1 first, and the name of that round; then each earlier model's
    under its name (``r0.f1``, ...).

    `dvc exp show` orders its columns by metrics file, then by the file's key order, and
    `dvc metrics show` by key name: in both the last round's test F1 (``f1``) comes first, under
    one name whatever the number of rounds. Scores a round lacks (no gold tags in the target
    corpus) are left out: DVC ignores nulls."""
    if not rows:
        return {}

    def scores(row: dict) -> dict:
        return {key: row[field] for key, field in HEADLINE if row.get(field) is not None}

    *earlier, last = rows
    return {**scores(last), "round": last["round"], **{row["round"]: scores(row) for row in earlier}}


def write_summary(rows: list[dict], out: Path) -> dict:
    """Write `summary_metrics` with its keys in order (not sorted, unlike `write_json`)."""
    summary = summary_metrics(rows)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def flip_rows(rows: list[dict]) -> list[dict]:
    """The round, round index and flip counts of each round that has them. r0's labels are the
    source model's own, so it has none; DVC's plots need every row to hold every plotted field,
    so r0 is left out here rather than drawn from null values."""
    return [{k: row[k] for k in ("round", "round_index", *FLIP_FIELDS)}
            for row in rows if all(row.get(f) is not None for f in FLIP_FIELDS)]


def confusion_rows(labels: pd.DataFrame) -> list[dict]:
    """One ``{"actual": gold, "predicted": hard label}`` row per span of a label table where the
    gold label or the pseudo label is an entity (the many spans that are O in both are left out,
    so the matrix is readable). Hard labels are per-span argmax, as in the pseudo-label P/R/F1
    of ``metrics/denoise/rN.json``. Empty when the target corpus has no gold tags."""
    known = labels[labels.gold.notna()]
    known = known[(known.gold != "O") | (known.label != "O")]
    return [{"actual": str(g), "predicted": str(p)} for g, p in zip(known.gold, known.label)]


def last_round_with_labels(rows: list[dict], rounds_dir: Path) -> str | None:
    """The highest round of the report that has a label table."""
    for row in reversed(rows):
        if (rounds_dir / row["round"] / "labels.parquet").is_file():
            return row["round"]
    return None


def write_confusion(rows: list[dict], rounds_dir: Path, out: Path) -> tuple[str | None, int]:
    """Write the last round's pseudo labels against gold (for DVC's ``confusion`` template):
    a JSON list, one compact row per line. Returns the round and the number of rows."""
    from glode.tables import LABELS_KIND, read_table

    name = last_round_with_labels(rows, rounds_dir)
    data = confusion_rows(read_table(rounds_dir / name / "labels.parquet", LABELS_KIND)) if name else []
    for d in data:
        d["round"] = name
    body = ",\n".join(json.dumps(d, sort_keys=True) for d in data)
    with atomic_path(out) as tmp:
        Path(tmp).write_text("[\n" + body + ("\n" if data else "") + "]\n", encoding="utf-8")
    return name, len(data)
