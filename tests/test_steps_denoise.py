"""glode/steps/denoise.py (the denoise@rN node): where a round starts (`denoise.start`: GLoDe refines
the previous round's labels; `model` restarts from the previous model's fresh predictions, with
both views off plain self-training), the EMA weight of each round, visits, align and select, and
what the round's statistics record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glode.errors import ParamError
from glode.label_table import labels_frame, read_labels_dense, write_labels
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, SPANS_FILE, SPANS_KIND, TARGET_REPS, save_array,
                                 write_pseudo_manifest)
from glode.settings import DenoiseSettings
from glode.steps.denoise import denoise_round, ema_weight
from glode.tables import write_table

CLASSES = ["O", "PER", "LOC"]


def _pseudo_dir(tmp_path):
    """Four target spans scored by a 'previous model' that calls span 2 PER (the old labels say LOC)."""
    rng = np.random.default_rng(0)
    probs = np.array([[0.1, 0.9, 0.0], [0.95, 0.03, 0.02], [0.2, 0.7, 0.1], [0.99, 0.0, 0.01]], np.float32)
    spans = pd.DataFrame({"sentence_id": np.array([0, 0, 1, 1], np.int64), "start": np.array([0, 1, 0, 1], np.int32),
                          "end": np.array([1, 2, 1, 2], np.int32), "text": ["a", "b", "c", "d"]})
    for c, name in enumerate(CLASSES):
        spans[name] = probs[:, c]
    spans["label"] = np.array(CLASSES, dtype=object)[probs.argmax(1)]
    spans["kept"] = [True, False, True, False]
    spans["gold"] = ["PER", "O", "LOC", "O"]
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    write_table(spans, pseudo / SPANS_FILE, SPANS_KIND, extra_metadata={"classes": CLASSES, "model_round": "r1"})
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    save_array(pseudo / TARGET_REPS, unit(rng.normal(size=(4, 8))))
    save_array(pseudo / SOURCE_REPS, unit(rng.normal(size=(6, 8))))
    save_array(pseudo / SOURCE_LABELS, np.array([0, 1, 2, 0, 1, 2], np.int64))
    write_pseudo_manifest(pseudo, CLASSES)
    prev = np.array([[0.2, 0.8, 0], [1, 0, 0], [0.3, 0.0, 0.7], [1, 0, 0]], np.float32)
    write_labels(labels_frame(spans, CLASSES, "r0", prev, prev, np.array([0, 2])), tmp_path / "prev.parquet", CLASSES, "r0")
    return spans, pseudo, prev, probs


def _run(tmp_path, pseudo, start, **views):
    out = tmp_path / f"{start}.parquet"
    settings = DenoiseSettings(k=2, o_keep_rate=1.0, local_scale=0.9, m_start=0.8, m_step=0.1, m_min=0.5,
                               prototype="mean", momentum=0.99, index="exact", auto_threshold=10, nprobe=1, seed=0,
                               start=start, **{"gate": "none", **views})
    summary = denoise_round("r1", pseudo, tmp_path / "prev.parquet", out, tmp_path / f"{start}.json", settings)
    return out, summary


def test_plain_self_training_takes_the_previous_models_predictions(tmp_path):
    spans, pseudo, prev, probs = _pseudo_dir(tmp_path)
    out, summary = _run(tmp_path, pseudo, "model", use_global=False, use_local=False)
    Y = read_labels_dense(out, spans, CLASSES)
    expected = np.array([probs[0], [1, 0, 0], probs[2], [1, 0, 0]], np.float32)  # kept entities keep their distribution
    np.testing.assert_allclose(Y, expected, atol=1e-6)
    assert summary["start"] == "model" and summary["pseudo_label"]["after"]["f1"] == pytest.approx(0.5)


def test_glode_start_refines_the_previous_rounds_labels(tmp_path):
    spans, pseudo, prev, _ = _pseudo_dir(tmp_path)
    out, _ = _run(tmp_path, pseudo, "labels", use_global=False, use_local=False)
    np.testing.assert_allclose(read_labels_dense(out, spans, CLASSES), prev, atol=1e-6)  # no view: labels kept


def test_unknown_start_is_a_parameter_error(tmp_path):
    _, pseudo, _, _ = _pseudo_dir(tmp_path)
    with pytest.raises(ParamError, match="denoise.start"):
        _run(tmp_path, pseudo, "gold", use_global=True, use_local=True)


def test_unknown_gate_is_a_parameter_error_before_anything_is_written(tmp_path):
    _, pseudo, _, _ = _pseudo_dir(tmp_path)
    with pytest.raises(ParamError, match="denoise.gate"):
        _run(tmp_path, pseudo, "labels", use_global=True, use_local=True, gate="both")
    assert not (tmp_path / "labels.parquet").exists()


def test_gate_is_recorded_in_the_round_statistics(tmp_path):
    _, pseudo, _, _ = _pseudo_dir(tmp_path)
    _, summary = _run(tmp_path, pseudo, "model", use_global=True, use_local=True, gate="agree")
    assert summary["gate"] == "agree" and "refused_by_gate" in summary["changed"]


def test_round_statistics_carry_soft_scores_and_moved_mass(tmp_path):
    spans, pseudo, prev, probs = _pseudo_dir(tmp_path)
    out, summary = _run(tmp_path, pseudo, "labels", use_global=False, use_local=True)
    Y = read_labels_dense(out, spans, CLASSES)
    gold = np.array([1, 0, 2, 0])
    pl = summary["pseudo_label"]
    assert pl["soft_before"]["gold_class_mass_on_gold_entity"] == pytest.approx((0.8 + 0.7) / 2)
    assert pl["soft_after"]["brier"] == pytest.approx(float(((Y - np.eye(3)[gold]) ** 2).sum(1).mean()), rel=1e-5)
    assert summary["pseudo_label_soft_f1"] == pl["soft_after"]["f1"]
    moved = 0.5 * np.abs(Y - prev).sum(1)
    assert summary["soft_change"]["mass_moved"] == pytest.approx(float(moved.sum()), abs=1e-5)


def test_library_parameter_errors_name_the_params_yaml_key(tmp_path):
    _, pseudo, _, _ = _pseudo_dir(tmp_path)
    with pytest.raises(ParamError, match=r"parameter 'denoise.local-cap'"):
        _run(tmp_path, pseudo, "labels", use_global=True, use_local=True, local_cap=1.5)
    with pytest.raises(ParamError, match=r"parameter 'denoise.o-keep-rate'"):
        DenoiseSettings(k=2, o_keep_rate=2.0)
    assert not (tmp_path / "x.json").exists()


def test_select_demotes_the_less_confident_entity_and_is_counted(tmp_path):
    """Both kept spans are PER by the model (0.9 and 0.7): keeping half of PER demotes the 0.7 one to O."""
    spans, pseudo, _, probs = _pseudo_dir(tmp_path)
    out, summary = _run(tmp_path, pseudo, "model", use_global=False, use_local=False, select=0.5)
    Y = read_labels_dense(out, spans, CLASSES)
    np.testing.assert_allclose(Y[0], probs[0], atol=1e-6)
    np.testing.assert_allclose(Y[2], [1, 0, 0], atol=1e-6)
    assert summary["select"]["demoted_per_class"] == {"O": 0, "PER": 1, "LOC": 0}
    with pytest.raises(ParamError, match=r"parameter 'denoise.select-rest'"):
        _run(tmp_path, pseudo, "model", use_global=False, use_local=False, select=0.5, select_rest=-1)


def test_visits_are_repeated_update_steps_towards_the_same_views(tmp_path):
    """Three visits at m = 0.8 move a label as one step at 0.8**3 would, and as three single
    steps towards the same views do (the views do not change between them)."""
    spans, pseudo, prev, _ = _pseudo_dir(tmp_path)
    once, s1 = _run(tmp_path, pseudo, "labels", use_global=True, use_local=True, gate="none")
    Y1 = read_labels_dense(once, spans, CLASSES)
    U = np.where(np.abs(Y1 - prev).sum(1, keepdims=True) > 0, (Y1 - 0.8 * prev) / 0.2, prev)  # the views' target u
    out3, s3 = _run(tmp_path, pseudo, "labels", use_global=True, use_local=True, gate="none", visits=3)
    Y3 = read_labels_dense(out3, spans, CLASSES)
    stepped = prev.copy()
    for _ in range(3):
        stepped = 0.8 * stepped + 0.2 * U
    np.testing.assert_allclose(Y3, stepped, atol=1e-5)
    assert s3["m"] == pytest.approx(0.8**3) and s3["m_round"] == pytest.approx(0.8) and s3["visits"] == 3
    assert "visits" not in s1 and s1["m"] == pytest.approx(0.8)
    assert s3["soft_change"]["mass_moved"] > s1["soft_change"]["mass_moved"]
    with pytest.raises(ParamError, match=r"parameter 'denoise.visits'"):
        _run(tmp_path, pseudo, "labels", use_global=True, use_local=True, visits=0)


def test_align_reweights_the_models_predictions_and_records_it(tmp_path):
    """The source (labels 0,1,2,0,1,2) has as many LOC as PER entities, the model predicts PER
    far more: aligning lifts LOC, so span 2 (PER 0.7, LOC 0.1) stays PER only if the weight
    is small; its statistics name the weights and the entity counts before and after."""
    spans, pseudo, _, probs = _pseudo_dir(tmp_path)
    out, summary = _run(tmp_path, pseudo, "model", use_global=False, use_local=False, align=1.0)
    a = summary["align"]
    assert a["weights"]["LOC"] > 1 > a["weights"]["PER"] and a["power"] == 1.0
    assert a["entities_before"] == {"PER": 2, "LOC": 0}
    _, plain = _run(tmp_path, pseudo, "model", use_global=False, use_local=False)
    assert "align" not in plain
    with pytest.raises(ParamError, match=r"parameter 'denoise.align'"):
        _run(tmp_path, pseudo, "labels", use_global=False, use_local=False, align=1.0)


def test_ema_schedule_depends_only_on_the_round():
    assert ema_weight("r1", 0.8, 0.1, 0.5, update_from=1) == pytest.approx(0.8)
    assert ema_weight("r2", 0.8, 0.1, 0.5, update_from=1) == pytest.approx(0.7)
    assert ema_weight("r9", 0.8, 0.1, 0.5, update_from=1) == pytest.approx(0.5)
    # the reference's timing (5 epochs as rounds): no update in r1, r2; then 0.9125, 0.875, 0.8375
    ref = [ema_weight(f"r{i}", 0.9125, 0.0375, 0.8, update_from=3) for i in range(1, 6)]
    assert ref == pytest.approx([1.0, 1.0, 0.9125, 0.875, 0.8375])
    with pytest.raises(ParamError, match="denoise.m-start"):
        DenoiseSettings(m_start=1.5)
