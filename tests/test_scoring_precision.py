"""Issue 38: ``evaluate.precision``, the scoring stages' and ``glode predict``'s own precision
(fp32, bf16, fp16 or int8: the encoder's linear layers dynamically quantised), separate from
training's ``train.precision``. The F1 and speed of each on real models: bench/scoring_precision.py
and bench/predict_bench.py (docs/BENCHMARKS.md)."""

from __future__ import annotations

import copy
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import glode.device
from glode.device import grad_scaler, place_model, scoring_device
from glode.errors import ParamError
from glode.features import SentenceEncoder
from glode.model import SpanModelConfig, build_model
from glode.scoring import score_spans
from glode.settings import DeviceSettings, EvaluateSettings
from glode.stagecli import single_command
from tests.pseudo_workspace import CLASSES, write_workspace
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [["Anna", "lives", "in", "New", "York", "."], ["Siemens", "and", "Ajax", "visited", "Rotterdam", "."],
             ["Jan", "de", "Vries", "visited", "Rotterdam", "today", "."]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return write_workspace(tmp_path_factory.mktemp("scoring-precision"))


def _fake_cuda(monkeypatch):
    monkeypatch.setattr(glode.device.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(glode.device.torch.cuda, "device_count", lambda: 1)


def test_int8_quantises_the_encoders_linear_layers_and_scores_close_to_fp32(tmp_path):
    """The encoder's linear layers become int8 but for the feed-forward down projections (and the
    span head), which stay fp32; the tiny model's span probabilities move (so int8 did run) by less
    than 1e-3 (observed ~1e-4) and no argmax changes."""
    encoder = build_tiny_encoder(tmp_path / "enc", words=all_words())
    model, tok = build_model(encoder, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    data = SentenceEncoder(tok, 3, 64).encode(SENTENCES)
    plain = np.concatenate([s.probs for s in score_spans(model, data, tok.pad_token_id, progress=False)])
    small = copy.deepcopy(model)
    assert place_model(small, "cpu", "int8") == torch.device("cpu")
    fp32 = [n for n, m in small.encoder.named_modules() if isinstance(m, torch.nn.Linear)]
    assert fp32 == ["encoder.layer.0.output.dense", "encoder.layer.1.output.dense"]  # 64 -> 32: kept
    quantised = torch.ao.nn.quantized.dynamic.Linear
    assert sum(isinstance(m, quantised) for m in small.encoder.modules()) == 11  # 2 layers x 5, and the pooler
    assert type(small.classifier) is torch.nn.Linear
    got = np.concatenate([s.probs for s in score_spans(small, data, tok.pad_token_id, progress=False, precision="int8")])
    assert got.dtype == np.float32 and got.shape == plain.shape
    np.testing.assert_allclose(got, plain, atol=1e-3)
    assert not np.array_equal(got, plain)
    assert (got.argmax(1) == plain.argmax(1)).all()
    place_model(small, "cpu", "int8")  # a second placement leaves the quantised model as it is
    again = np.concatenate([s.probs for s in score_spans(small, data, tok.pad_token_id, progress=False, precision="int8")])
    np.testing.assert_array_equal(again, got)


def test_int8_is_a_scoring_precision_that_training_refuses():
    assert EvaluateSettings(precision="int8").precision == "int8"
    with pytest.raises(ParamError, match=r"'evaluate.precision': 'fp8' is not allowed; expected one of fp32, bf16, fp16, int8"):
        EvaluateSettings(precision="fp8")
    with pytest.raises(ParamError, match=r"train.precision.*one of fp32, bf16, fp16$"):
        DeviceSettings(precision="int8")
    with pytest.raises(ParamError, match=r"'train.precision': int8 scores only"):
        grad_scaler(torch.device("cpu"), "int8")


def test_scoring_device_checks_evaluate_precision_against_the_device(monkeypatch):
    train = DeviceSettings(device="cpu", precision="bf16")
    scoring = scoring_device(train, "int8")
    assert (scoring.device, scoring.precision) == ("cpu", "int8") and train.precision == "bf16"
    with pytest.raises(ParamError, match=r"'evaluate.precision': fp16 needs a CUDA device"):
        scoring_device(DeviceSettings(device="cpu"), "fp16")
    _fake_cuda(monkeypatch)
    with pytest.raises(ParamError, match=r"'evaluate.precision': int8 \(dynamic quantisation\) runs on the CPU, the model "
                                         r"runs on cuda"):
        scoring_device(DeviceSettings(device="auto"), "int8")


def test_glode_check_names_evaluate_precision_where_it_cannot_run(monkeypatch, tmp_path):
    from glode.limits import limit_problems
    from glode.params import check_params
    from tests.params_fixture import default_params

    params = default_params()
    params["evaluate"]["precision"] = "fp8"
    assert "evaluate.precision: 'fp8' is not allowed; expected one of fp32, bf16, fp16, int8, auto" in check_params(params, tmp_path)
    params["evaluate"]["precision"] = "int8"
    assert not [p for p in limit_problems(params, tmp_path) if "precision" in p]  # int8 runs on this CPU
    _fake_cuda(monkeypatch)
    problems = limit_problems(params, tmp_path)
    assert [p for p in problems if "precision" in p] == [
        "evaluate.precision: int8 (dynamic quantisation) runs on the CPU, the model runs on cuda; use fp32, bf16 or "
        "fp16 there, or train.device: cpu"], problems


def _stage(script: str, *args: str) -> None:
    """Run a stage's command in this process, as DVC runs it from params.yaml."""
    result = CliRunner().invoke(single_command(runpy.run_path(str(ROOT / "stages" / script))["main"]), list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output


def test_the_scoring_stages_score_in_evaluate_precision(workspace):
    """`--precision` of initial_labels, pseudo_label and evaluate is evaluate.precision: int8 writes
    int8-scored probabilities (near fp32's, not equal), and the metrics of a stage that scored
    in a reduced precision record it; fp32 metrics carry no such key (their bytes are unchanged)."""
    from glode.pseudo_folder import SPANS_FILE, SPANS_KIND
    from glode.tables import LABELS_KIND, read_table

    w = workspace
    out = {}
    for precision in ("fp32", "int8"):
        o = out[precision] = w / precision
        common = ("--tables", str(w / "tables"), "--device", "cpu", "--batch-size", "4", "--precision", precision)
        _stage("initial_labels.py", "--model", str(w / "models/r0"), "--out", str(o / "labels.parquet"),
               "--metrics", str(o / "r0.json"), *common)
        _stage("pseudo_label.py", "--round", "r1", "--prev", "r0", "--models", str(w / "models"), "--out",
               str(o / "pseudo"), "--encoder", str(w / "encoder"), "--dim", "8", *common)
        _stage("evaluate.py", "--model", str(w / "models/r0"), "--metrics", str(o / "test.json"), "--test",
               str(w / "tables/target_test.parquet"), *common[2:])
    for name in ("r0.json", "test.json"):
        fp32, int8 = (json.loads((out[p] / name).read_text()) for p in ("fp32", "int8"))
        assert "scoring_precision" not in fp32 and int8["scoring_precision"] == "int8", name
    fp32, int8 = (json.loads((out[p] / "pseudo" / "glode_pseudo.json").read_text()) for p in ("fp32", "int8"))
    assert "scoring_precision" not in fp32 and int8["scoring_precision"] == "int8"
    spans = [read_table(out[p] / "pseudo" / SPANS_FILE, SPANS_KIND) for p in ("fp32", "int8")]
    # Y0 keeps the distribution of the spans kept as entities (others are one-hot O): a rounding may
    # keep another span, so the spans that both keep are compared
    key = ["sentence_id", "start", "end"]
    labels = [read_table(out[p] / "labels.parquet", LABELS_KIND).set_index(key) for p in ("fp32", "int8")]
    kept = [t.index[t[CLASSES].max(axis=1) < 1] for t in labels]
    both = kept[0].intersection(kept[1])
    assert len(both) >= 0.8 * max(map(len, kept))
    for a, b in ((t[CLASSES].to_numpy() for t in spans), (t.loc[both, CLASSES].to_numpy() for t in labels)):
        assert a.shape == b.shape and len(a) > 10
        # the workspace's r0 has noise of scale 0.5 added to its encoder weights: int8 moves it more
        # than the plain tiny model above (observed up to 0.033), and still only by rounding
        np.testing.assert_allclose(b, a, atol=0.1)
        assert not np.array_equal(a, b)
