"""glode/steps/initial_labels.py (the initial_labels node): Y0 from the r0 model's span scores, with
its hard and soft quality against gold in r0's statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from glode.settings import EvaluateSettings
from tests.pseudo_workspace import CLASSES, run_pseudo_label, write_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return write_workspace(tmp_path_factory.mktemp("pseudo"))


def test_initial_labels_report_the_soft_quality_of_y0(workspace):
    """r0's statistics carry the soft scores of Y0 beside the hard ones (the report's r0 row)."""
    import json

    from glode.label_quality import soft_scores
    from glode.label_table import class_ids, initial_soft_labels
    from glode.pseudo_folder import SPANS_FILE, SPANS_KIND
    from glode.steps.initial_labels import initial_labels
    from glode.tables import read_table

    out = workspace / "r0"
    summary = initial_labels(workspace / "models/r0", workspace / "tables", out / "labels.parquet",
                             out / "r0.json", EvaluateSettings(), progress=False)
    spans = read_table(run_pseudo_label(workspace, "for-r0") / SPANS_FILE, SPANS_KIND)
    want = soft_scores(initial_soft_labels(spans, CLASSES), class_ids(spans.gold, CLASSES))
    assert summary["pseudo_label"]["soft_after"] == pytest.approx(want)
    assert json.loads((out / "r0.json").read_text())["pseudo_label_soft_f1"] == pytest.approx(want["f1"])
