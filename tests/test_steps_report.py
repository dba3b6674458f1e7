"""glode/steps/report.py (the report node): per-round rows for `dvc plots` (scores, flips), the
summary, the rounds it reports on, and the last round's confusion rows."""

from __future__ import annotations

import json

import pytest

from glode.errors import ParamError
from glode.steps.report import (confusion_rows, flip_rows, model_names, summary_metrics, write_confusion,
                                write_round_report, write_summary)
from tests.round_outputs import CLASSES, R1, R2, label_frame, metrics_dir, write_round


def test_round_rows_carry_test_and_pseudo_label_scores_and_flips(tmp_path):
    rows = write_round_report(metrics_dir(tmp_path), tmp_path / "reports/rounds.json")
    assert [r["round_index"] for r in rows] == [0, 1, 2]
    assert rows[2]["test_f1"] == 0.7 and rows[2]["test_span_f1"] == 0.55
    assert rows[1]["pseudo_label_precision"] == 0.6 and rows[1]["pseudo_label_recall"] == 0.45
    assert (rows[2]["flips_o_to_entity"], rows[2]["flips_entity_to_o"], rows[2]["flips_type_swap"]) == (2, 4, 6)
    assert rows[0]["flips_type_swap"] is None
    assert rows[2]["pseudo_label_soft_f1"] == pytest.approx(0.42) and rows[2]["pseudo_label_soft_f1_before_denoising"] == 0.3
    assert (rows[1]["entity_mass_on_gold_entity"], rows[1]["entity_mass_on_gold_o"]) == (0.7, 0.01)
    assert rows[1]["gold_class_mass_on_gold_entity"] == 0.6
    assert (rows[2]["brier"], rows[2]["brier_before_denoising"], rows[2]["soft_mass_moved"]) == (0.05, 0.06, 20.0)
    assert rows[0]["soft_mass_moved"] is None and rows[0]["brier_before_denoising"] is None
    assert json.loads((tmp_path / "reports/rounds.json").read_text()) == rows


def test_rounds_removed_from_params_do_not_come_back_as_rows(tmp_path):
    """DVC leaves metrics/r2.json behind when the chain drops r2: params decide the rows."""
    params = tmp_path / "params.yaml"
    params.write_text("rounds: &rounds\n  r1: {prev: r0}\nmodels:\n  r0: {prev: source}\n  <<: *rounds\n")
    names = model_names(params)
    assert names == ["r0", "r1"]
    rows = write_round_report(metrics_dir(tmp_path), tmp_path / "reports/rounds.json", names)
    assert [r["round"] for r in rows] == ["r0", "r1"]


def test_summary_leads_with_the_last_rounds_test_f1_and_stays_small(tmp_path):
    """Issue 41: the DVC metrics are the last round's scores, test F1 first, then each earlier
    model's; written in that order (DVC keeps a file's key order in `dvc exp show`)."""
    rows = write_round_report(metrics_dir(tmp_path), tmp_path / "reports/rounds.json")
    out = tmp_path / "reports/metrics.json"
    summary = write_summary(rows, out)
    assert list(summary)[:7] == ["f1", "precision", "recall", "span_f1", "pseudo_label_f1", "pseudo_label_soft_f1", "round"]
    assert list(summary)[7:] == ["r0", "r1"]
    assert summary["f1"] == pytest.approx(0.7) and summary["round"] == "r2" and summary["r0"]["f1"] == 0.5
    assert summary["r1"] == {"f1": pytest.approx(0.6), "precision": 0.6, "recall": 0.4, "span_f1": 0.55,
                             "pseudo_label_f1": 0.5, "pseudo_label_soft_f1": pytest.approx(0.41)}
    text = out.read_text()
    assert json.loads(text) == summary and text.index('"f1"') < text.index('"precision"') < text.index('"r0"')
    # and `dvc metrics show`, which sorts by name, also starts with the headline
    assert sorted(summary)[0] == "f1"
    # the default (r0 and one round): 13 values; two rounds stay within 20
    assert len(leaves(summary_metrics(rows[:2]))) == 13 and len(leaves(summary)) == 19


def test_summary_leaves_out_scores_a_round_lacks(tmp_path):
    """A target corpus without gold tags has no pseudo-label scores: no key, rather than a null."""
    rows = write_round_report(metrics_dir(tmp_path, ("r0", "r1")), tmp_path / "reports/rounds.json")
    for row in rows:
        row["pseudo_label_f1"] = row["pseudo_label_soft_f1"] = None
    summary = summary_metrics(rows)
    assert list(summary) == ["f1", "precision", "recall", "span_f1", "round", "r0"]
    assert summary_metrics([]) == {}


def leaves(d: dict) -> list:
    return [v for x in d.values() for v in (leaves(x) if isinstance(x, dict) else [x])]


@pytest.mark.parametrize("text, key", [("target: de\n", "models"), ("models:\n  final: {prev: r0}\n", "models")])
def test_model_names_refuse_params_without_round_models(tmp_path, text, key):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    with pytest.raises(ParamError) as err:
        model_names(params)
    assert err.value.name == key and "params.yaml" in str(err.value)


def test_confusion_rows_leave_out_spans_o_in_both():
    frame = label_frame(R1, "r1")  # New (O, gold O) is left out; Ajax is LOC with gold ORG
    assert confusion_rows(frame) == [
        {"actual": "PER", "predicted": "PER"},
        {"actual": "LOC", "predicted": "LOC"},
        {"actual": "ORG", "predicted": "ORG"},
        {"actual": "ORG", "predicted": "LOC"},
    ]
    frame["gold"] = None  # a corpus without gold tags
    assert confusion_rows(frame) == []


def test_confusion_is_written_for_the_last_round_with_labels(tmp_path):
    rows = write_round_report(metrics_dir(tmp_path), tmp_path / "reports/rounds.json")
    write_round(tmp_path, R1, "r1")
    write_round(tmp_path, R2, "r2")
    out = tmp_path / "reports/confusion.json"
    assert write_confusion(rows, tmp_path / "rounds", out) == ("r2", 5)
    data = json.loads(out.read_text())
    assert {d["round"] for d in data} == {"r2"}
    assert {"actual": "O", "predicted": "PER", "round": "r2"} in data  # "the" became PER
    # no label tables at all: an empty list, which `dvc plots show` accepts
    assert write_confusion(rows, tmp_path / "nowhere", out) == (None, 0)
    assert json.loads(out.read_text()) == []
    assert set(CLASSES) >= {d["actual"] for d in data}


def test_flip_rows_leave_out_rounds_without_counts(tmp_path):
    rows = write_round_report(metrics_dir(tmp_path), tmp_path / "rounds.json")
    assert rows[0]["flips_type_swap"] is None  # rounds.json keeps r0 with nulls
    assert flip_rows(rows) == [
        {"round": "r1", "round_index": 1, "flips_o_to_entity": 1, "flips_entity_to_o": 2, "flips_type_swap": 3},
        {"round": "r2", "round_index": 2, "flips_o_to_entity": 2, "flips_entity_to_o": 4, "flips_type_swap": 6},
    ]
