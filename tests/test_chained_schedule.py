"""retrain.schedule-rounds: chained rounds share one AdamW state and one learning-rate schedule,
as the reference trains its target model in one run (docs/METHOD.md §7)."""

from __future__ import annotations

import pytest
import torch

from glode.errors import ParamError
from glode.model import SpanModelConfig, build_model
from glode.settings import TrainSettings
from glode.training import ChainedRun, _linear_schedule, train
from tests.synthetic import all_words
from tests.test_model import CLASSES, encoded
from tests.tiny_encoder import build_tiny_encoder


def _lrs(total: int, warmup: int, steps: int, offset: int = 0) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = _linear_schedule(opt, total, warmup, offset)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_chained_slices_of_the_schedule_are_the_one_run_schedule():
    whole = _lrs(30, 3, 30)
    assert _lrs(30, 3, 10) + _lrs(30, 3, 10, offset=10) + _lrs(30, 3, 10, offset=20) == pytest.approx(whole)
    assert whole[2] == pytest.approx(1.0) and whole[-1] == pytest.approx(1 / 27)  # warm-up, then decay to 0 at 30


def test_a_round_outside_the_schedule_is_refused_naming_the_key():
    with pytest.raises(ParamError, match="retrain.schedule-rounds"):
        ChainedRun(index=4, rounds=3)


def test_the_second_round_continues_the_first_rounds_optimiser_and_schedule(tmp_path):
    """Round 2 of a 2-round chain starts from round 1's AdamW state (its step count carries on)
    and its learning rate continues the one decay, ending at zero; without the chain a round
    restarts both."""
    encoder_dir = build_tiny_encoder(tmp_path / "tiny", words=all_words())
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    data = encoded(tok)
    cfg = TrainSettings(epochs=1, batch_size=1, seed=0, lr=1e-3, mlm_weight=0.0, warmup_ratio=0.0)
    first = ChainedRun(index=1, rounds=2)
    train(model, tok, data, cfg, progress=False, chained=first)
    steps = len(data)  # one sentence a batch, one epoch
    step_counts = {int(s["step"]) for s in first.state["state"].values()}
    assert step_counts == {steps}
    lr_after_first = [g["lr"] for g in first.state["param_groups"]]
    assert lr_after_first[0] == pytest.approx(cfg.lr * 0.5)  # halfway through one decay over both rounds
    second = ChainedRun(index=2, rounds=2, state=first.state)
    train(model, tok, data, cfg, progress=False, chained=second)
    assert {int(s["step"]) for s in second.state["state"].values()} == {2 * steps}
    assert [g["lr"] for g in second.state["param_groups"]][0] == pytest.approx(0.0)
