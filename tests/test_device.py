"""Issue 23: train.device and train.precision chosen in one place (glode/device.py) and used by
training and scoring. Everything here runs on the CPU; the accelerator checks are skipped on a
machine without one."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from glode.device import autocast, grad_scaler, place_model, resolve_device
from glode.errors import ParamError
from glode.features import SentenceEncoder, attach_gold, collate
from glode.model import SpanModelConfig, build_model
from glode.params import SCHEMA
from glode.predict import score_spans
from glode.settings import DeviceSettings, TrainSettings
from glode.training import train
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
SENTENCES = [["Anna", "lives", "in", "New", "York", "."], ["Siemens", "and", "Ajax", "."],
             ["Jan", "de", "Vries", "visited", "Rotterdam", "today", "."]]
GOLD = [[(0, 1, "PER"), (3, 5, "LOC")], [(0, 1, "ORG"), (2, 3, "ORG")], [(0, 3, "PER"), (4, 5, "LOC")]]
CLASSES = ["O", "PER", "ORG", "LOC"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())


def _model(encoder_dir):
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    index = {c: i for i, c in enumerate(CLASSES)}
    data = [attach_gold(e, g, index) for e, g in zip(SentenceEncoder(tok, 3, 64).encode(SENTENCES), GOLD)]
    return model, tok, data


@pytest.mark.parametrize("value, ok", [("auto", True), ("cpu", True), ("cuda", True), ("cuda:1", True), ("mps", True),
                                       ("gpu", False), ("cuda:", False), ("cuda:x", False), ("CPU", False), ("", False)])
def test_the_device_key_takes_exactly_the_documented_names(value, ok):
    assert (SCHEMA["train.device"].problem(value) is None) == ok
    if not ok:
        with pytest.raises(ParamError, match="train.device"):
            DeviceSettings(device=value)
    with pytest.raises(ParamError, match=r"train.precision.*one of fp32, bf16, fp16"):
        DeviceSettings(precision="fp8")


def test_auto_picks_the_accelerator_when_there_is_one():
    want = "cuda" if HAS_CUDA else "mps" if HAS_MPS else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="the machine has CUDA")
def test_asking_for_an_absent_accelerator_is_an_error_naming_the_key():
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ParamError, match=r"parameter 'train.device'.*no CUDA device"):
            resolve_device(name)


@pytest.mark.skipif(HAS_MPS, reason="the machine has MPS")
def test_asking_for_absent_mps_is_an_error_naming_the_key():
    with pytest.raises(ParamError, match=r"parameter 'train.device'.*no Apple MPS"):
        resolve_device("mps")


def test_precision_contexts_on_the_cpu():
    cpu = torch.device("cpu")
    assert isinstance(autocast(cpu, "fp32"), contextlib.nullcontext) and grad_scaler(cpu, "fp32") is None
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert grad_scaler(cpu, "bf16") is None
    with pytest.raises(ParamError, match=r"train.precision.*fp16 needs a CUDA device"):
        autocast(cpu, "fp16")


def test_a_batch_on_its_own_device_is_not_copied(encoder_dir):
    _, tok, data = _model(encoder_dir)
    batch = collate(data, tok.pad_token_id)
    assert batch.to(torch.device("cpu")) is batch


def test_explicit_cpu_trains_exactly_as_the_default(encoder_dir):
    """The default settings (auto) on this machine and an explicit cpu give the same weights; with
    an accelerator present auto picks it, and the comparison is only run without one."""
    if HAS_CUDA or HAS_MPS:
        pytest.skip("auto picks the accelerator here")
    cfg = TrainSettings(epochs=2, batch_size=2, lr=1e-3, mlm_weight=0.0)
    states = []
    for device in (None, DeviceSettings(device="cpu")):
        model, tok, data = _model(encoder_dir)
        train(model, tok, data, cfg, progress=False, device=device)
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_bf16_on_the_cpu_trains_and_scores_close_to_fp32(encoder_dir):
    """bf16 keeps 8 bits of mantissa: scores within 0.05 of fp32's, float32 arrays either way."""
    model, tok, data = _model(encoder_dir)
    cfg = TrainSettings(epochs=2, batch_size=2, lr=1e-3, mlm_weight=0.0)
    history = train(model, tok, data, cfg, progress=False, device=DeviceSettings(device="cpu", precision="bf16"))
    assert all(np.isfinite(r["loss_source"]) for r in history)
    full = score_spans(model, data, tok.pad_token_id, progress=False, with_features=True)
    half = score_spans(model, data, tok.pad_token_id, progress=False, with_features=True, precision="bf16")
    for a, b in zip(full, half):
        assert b.probs.dtype == np.float32 and b.features.dtype == np.float32
        np.testing.assert_allclose(a.probs, b.probs, atol=0.05)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_trains_and_scores_close_to_the_cpu(encoder_dir, precision):
    cfg = TrainSettings(epochs=2, batch_size=2, lr=1e-3, mlm_weight=0.0)
    model, tok, data = _model(encoder_dir)
    history = train(model, tok, data, cfg, progress=False, device=DeviceSettings(device="cuda", precision=precision))
    assert all(np.isfinite(r["loss_source"]) for r in history)
    assert next(model.parameters()).device.type == "cuda"
    on_gpu = score_spans(model, data, tok.pad_token_id, progress=False, precision=precision)
    place_model(model, "cpu", "fp32")
    on_cpu = score_spans(model, data, tok.pad_token_id, progress=False)
    for a, b in zip(on_cpu, on_gpu):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4 if precision == "fp32" else 0.05)
