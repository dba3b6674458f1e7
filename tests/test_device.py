"""Issue 23: train.device and train.precision chosen in one place (glode/device.py) and used by
training and scoring. Everything here runs on the CPU; the accelerator checks are skipped on a
machine without one."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from glode.device import autocast, grad_scaler, launch_processes, place_model, resolve_device
from glode.errors import ParamError
from glode.features import SentenceEncoder, attach_gold, collate
from glode.model import SpanModelConfig, build_model
from glode.params import SCHEMA
from glode.scoring import score_spans
from glode.settings import DeviceSettings, TrainSettings
from glode.training import soft_cross_entropy, train
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


@pytest.fixture
def launched(monkeypatch):
    """A process of a 2-process launch (torchrun's environment) on a machine whose accelerators
    ``launched(cuda=N, mps=...)`` says: torch's answers are replaced, nothing runs on them."""
    for key in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(key, raising=False)

    def setup(cuda: int = 0, mps: bool = False, local_rank: str | None = "0", world: int = 2):
        monkeypatch.setenv("WORLD_SIZE", str(world))
        if local_rank is not None:
            monkeypatch.setenv("LOCAL_RANK", local_rank)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr("glode.device._mps_available", lambda: mps)

    return setup


def test_launched_processes_take_one_gpu_each(launched):
    launched(cuda=2, local_rank="1")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    launched(cuda=2, local_rank="1", world=1)  # one process: cuda:N names the GPU it asks for
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("name, cuda, local_rank, message", [
    ("cuda:0", 2, "1", r"'cuda:0' names one GPU for all 2 launched processes"),
    ("cuda:1", 2, "1", r"'cuda:1' names one GPU for all 2 launched processes"),
    ("cuda", 2, None, r"needs LOCAL_RANK"),
    ("auto", 2, None, r"needs LOCAL_RANK"),
    ("cuda", 2, "2", r"LOCAL_RANK 2 but only 2 CUDA device"),
    ("auto", 1, "1", r"LOCAL_RANK 1 but only 1 CUDA device"),
])
def test_launched_processes_never_share_a_gpu(launched, name, cuda, local_rank, message):
    """Two processes on one GPU fail at nccl's first collective (or, with more processes than
    GPUs, wrap around silently): refused before any process group, naming the key."""
    launched(cuda=cuda, local_rank=local_rank)
    with pytest.raises(ParamError, match=r"parameter 'train.device'.*" + message):
        resolve_device(name)


@pytest.mark.parametrize("name", ["mps", "auto"])
def test_launched_processes_refuse_mps(launched, name):
    """gloo cannot sum MPS tensors: several processes on a Mac without CUDA are refused, also
    when ``auto`` would pick MPS; one process keeps MPS, and cpu is the way to train several."""
    launched(mps=True)
    with pytest.raises(ParamError, match=r"parameter 'train.device'.*Apple MPS.*launched processes.*use cpu"):
        resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")
    launched(mps=True, world=1)
    assert resolve_device(name) == torch.device("mps")


@pytest.mark.parametrize("processes, name, cuda, mps, expected", [
    (1, "cuda:1", 0, False, 1),  # one process: nothing to check here (resolve_device checks the device)
    (0, "auto", 0, False, 1), (0, "auto", 3, False, 3), (0, "cuda", 2, False, 2), (0, "cuda:1", 2, False, 1),
    (0, "auto", 0, True, 1), (4, "cpu", 0, False, 4), (4, "auto", 0, False, 4), (2, "cpu", 2, True, 2),
    (2, "cuda", 2, False, 2), (2, "auto", 3, False, 2),
])
def test_train_processes_0_is_one_per_gpu_and_any_number_trains_on_the_cpu(launched, processes, name, cuda, mps,
                                                                            expected):
    launched(cuda=cuda, mps=mps, local_rank=None, world=1)
    assert launch_processes(processes, name) == expected


@pytest.mark.parametrize("processes, name, cuda, mps, message", [
    (3, "cuda", 2, False, r"3 processes on CUDA need a GPU each, and this machine has 2; use at most 2"),
    (2, "auto", 1, False, r"2 processes on CUDA need a GPU each, and this machine has 1"),
    (2, "cuda:0", 2, False, r"2 processes each need their own GPU, and train.device 'cuda:0' names one"),
    (2, "mps", 0, True, r"cannot sum gradients on Apple MPS"),
    (2, "auto", 0, True, r"cannot sum gradients on Apple MPS"),
])
def test_train_processes_that_cannot_work_here_are_refused_naming_the_key(launched, processes, name, cuda, mps,
                                                                           message):
    """Refused before any process starts (the stage, and the check stage: tests/test_steps_check.py)."""
    launched(cuda=cuda, mps=mps, local_rank=None, world=1)
    with pytest.raises(ParamError, match=r"parameter 'train.processes'.*" + message):
        launch_processes(processes, name)


def test_bf16_probabilities_and_target_loss_are_computed_in_float32(encoder_dir):
    """CPU autocast runs softmax and log_softmax in bf16 (CUDA's promotes them): the scores
    and the soft cross-entropy are the float32 functions of the bf16 logits, not rounded to
    bf16's steps (~0.004 near 1)."""
    model, tok, data = _model(encoder_dir)
    model.eval()
    batch = collate(data, tok.pad_token_id)
    with torch.inference_mode(), autocast(torch.device("cpu"), "bf16"):
        logits = model.classifier(model.span_features(batch))
    assert logits.dtype == torch.bfloat16
    want = torch.softmax(logits.float(), dim=-1).numpy()
    got = np.concatenate([s.probs for s in score_spans(model, data, tok.pad_token_id, progress=False, precision="bf16")])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    targets = torch.softmax(torch.randn(logits.shape, generator=torch.Generator().manual_seed(0)), dim=-1)
    with autocast(torch.device("cpu"), "bf16"):
        loss = soft_cross_entropy(logits, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, soft_cross_entropy(logits.float(), targets), rtol=0, atol=1e-6)


def test_precision_contexts_on_the_cpu():
    cpu = torch.device("cpu")
    assert isinstance(autocast(cpu, "fp32"), contextlib.nullcontext) and grad_scaler(cpu, "fp32") is None
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert grad_scaler(cpu, "bf16") is None
    with pytest.raises(ParamError, match=r"train.precision.*fp16 needs a CUDA device"):
        autocast(cpu, "fp16")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_scoring_precision_auto_is_bf16_where_native_and_fp32_elsewhere(monkeypatch, native, expected):
    import glode.device

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu = torch.device("cpu")
    assert glode.device.native_bf16(cpu) is native
    assert glode.device.resolve_precision(cpu, "auto") == expected
    assert [glode.device.resolve_precision(cpu, p) for p in ("fp32", "bf16", "int8")] == ["fp32", "bf16", "int8"]
    assert glode.device.scoring_device(DeviceSettings(device="cpu"), "auto").precision == expected
    glode.device.check_precision(cpu, "auto", "evaluate.precision")  # whatever it resolves to runs on the CPU
    assert not glode.device.native_bf16(torch.device("mps"))  # autocast has no bf16 there; auto is fp32
    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: asked.append(including_emulation)
                        or including_emulation)  # an older GPU: bf16 only emulated
    assert not glode.device.native_bf16(torch.device("cuda")) and asked == [False]


def test_scoring_precision_auto_is_declared_for_scoring_only():
    assert "auto" in SCHEMA["evaluate.precision"].choices and SCHEMA["evaluate.precision"].default == "fp32"
    assert "auto" not in SCHEMA["train.precision"].choices  # training's precision changes what is learned


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
    """With the masked LM on (its batches are built on the CPU and moved; its loss in fp32)."""
    cfg = TrainSettings(epochs=2, batch_size=2, lr=1e-3, mlm_weight=0.001, mlm_batch_size=2)
    model, tok, data = _model(encoder_dir)
    history = train(model, tok, data, cfg, mlm_corpus=data, progress=False,
                    device=DeviceSettings(device="cuda", precision=precision))
    assert all(np.isfinite(r["loss_source"]) and np.isfinite(r["loss_mlm"]) and r["loss_mlm"] > 0 for r in history)
    assert next(model.parameters()).device.type == "cuda"
    on_gpu = score_spans(model, data, tok.pad_token_id, progress=False, precision=precision)
    place_model(model, "cpu", "fp32")
    on_cpu = score_spans(model, data, tok.pad_token_id, progress=False)
    for a, b in zip(on_cpu, on_gpu):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4 if precision == "fp32" else 0.05)
