"""glode/training.py: the training loop (gold, target soft labels, masked LM; windows, fractional
epochs), the two losses on target labels (``retrain.target-loss``: glode's soft cross-entropy and
the authors' ``-Σ Y log softmax(softmax(z))``, docs/METHOD.md §3, each against an independent
numpy transcription, and the reference loss's properties that bear on the views' soft mass),
chained rounds' one optimiser and schedule (``retrain.schedule-rounds``, METHOD.md §7) and
gradient accumulation (``train.grad-accum``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glode.errors import ParamError
from glode.features import SentenceEncoder, attach_gold, collate
from glode.model import SpanModelConfig, build_model
from glode.scoring import score_spans
from glode.settings import RetrainSettings, TrainSettings
from glode.training import (TARGET_LOSSES, ChainedRun, linear_schedule, optimiser_steps, reference_target_loss,
                            soft_cross_entropy, train, write_logs)
from tests.gold_sentences import CLASSES, GOLD, SENTENCES, encoded, trained
from tests.round_outputs import history
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())


# --- the training loop on the gold sentences ------------------------------------------------------


def test_training_is_deterministic_and_learns(encoder_dir):
    m1, tok, data = trained(encoder_dir, True, epochs=6)
    m2, _, _ = trained(encoder_dir, True, epochs=6)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    batch = collate(data, tok.pad_token_id)
    m1.eval()
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(m1(batch), batch.labels)
    fresh, _ = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    fresh.eval()
    with torch.no_grad():
        loss0 = torch.nn.functional.cross_entropy(fresh(batch), batch.labels)
    assert float(loss) < 0.5 * float(loss0)


def test_training_uses_windows_with_their_labels(encoder_dir):
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=16), seed=0)
    enc = SentenceEncoder(tok, 3, 16)
    words = SENTENCES[2] * 5
    gold = [(s + 7 * i, t + 7 * i, lab) for i in range(5) for s, t, lab in GOLD[2]]
    (e,) = enc.encode([words])
    attach_gold(e, gold, {c: i for i, c in enumerate(CLASSES)})
    assert e.windows
    units = e.units()
    for w in units:
        np.testing.assert_array_equal(w.span_labels, e.span_labels[w.rows])
    batch = collate([e], tok.pad_token_id)
    assert batch.input_ids.shape[0] == len(units) and batch.input_ids.shape[1] <= 16
    assert int((batch.labels > 0).sum()) == len(gold)
    history = train(model, tok, [e], TrainSettings(epochs=1, batch_size=1, seed=0), mlm_corpus=[e], progress=False)
    assert history[0]["steps"] == len(units) and "seconds" not in history[0]


def test_fractional_epochs_train_the_first_part_of_a_pass(encoder_dir):
    """epochs=1.5 trains one whole pass and half of the next (rounded up), and logs each part
    with its own step count; whole epochs keep exactly epochs x steps-per-epoch."""
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    data = encoded(tok) * 2  # 6 sentences: 3 steps of 2 per pass
    one_and_a_half = RetrainSettings(epochs=1.5).train_settings(TrainSettings(batch_size=2, seed=0, mlm_weight=0))
    history = train(model, tok, data, one_and_a_half, progress=False)
    assert [h["steps"] for h in history] == [3, 2] and [h["epoch"] for h in history] == [1, 2]
    history = train(model, tok, data, TrainSettings(epochs=2, batch_size=2, seed=0, mlm_weight=0), progress=False)
    assert [h["steps"] for h in history] == [3, 3]
    with pytest.raises(ParamError, match="train.epochs"):
        TrainSettings(epochs=0)
    with pytest.raises(ParamError, match="train.epochs"):  # a fraction only as retrain.epochs
        TrainSettings(epochs=1.5)


def test_target_pseudo_labels_steer_training(encoder_dir):
    """Self-training only works if the target loss reaches the gradient: the same run with
    every target span labelled LOC instead of O must raise the model's LOC probability there."""
    loc = CLASSES.index("LOC")
    mean_loc = []
    for target_class in (0, loc):
        model, tok, data = trained(encoder_dir, True, target_class=target_class, mlm_weight=0.0)
        probs = np.concatenate([s.probs for s in score_spans(model, data, tok.pad_token_id, progress=False)])
        mean_loc.append(float(probs[:, loc].mean()))
    assert mean_loc[1] > mean_loc[0] + 0.1, mean_loc


def test_mlm_weight_scales_the_masked_lm_loss(encoder_dir):
    """Two runs that draw the same batches and masks but weight the MLM loss differently must
    end with different weights (a loss left out of the sum would make them identical)."""
    m1, _, _ = trained(encoder_dir, True, target_class=0, mlm_weight=0.5)
    m2, _, _ = trained(encoder_dir, True, target_class=0, mlm_weight=1.0)
    differ = [k for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()) if not torch.equal(a, b)]
    assert any(k.startswith("encoder.") for k in differ), differ


def test_training_with_the_corpus_mlm_vocabulary_differs_from_full_and_is_recorded(encoder_dir, tmp_path):
    model_a, tok, data = trained(encoder_dir, True, target_class=0, mlm_weight=1.0)
    model_b, _ = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    cfg = TrainSettings(epochs=2, batch_size=2, seed=0, lr=1e-3, mlm_weight=1.0, mlm_vocab="corpus")
    assert cfg.recorded()["mlm_vocab"] == "corpus"
    target = SentenceEncoder(tok, 3, 64).encode(SENTENCES)
    for e in target:
        e.span_soft = np.zeros((len(e.span_word_start), len(CLASSES)), np.float32)
        e.span_soft[:, 0] = 1.0
    history = train(model_b, tok, data, cfg, mlm_corpus=data, target=target, progress=False)
    assert all(np.isfinite(r["loss_mlm"]) and r["loss_mlm"] > 0 for r in history)
    differ = [k for (k, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()) if not torch.equal(a, b)]
    assert any(k.startswith("encoder.") for k in differ), differ
    with pytest.raises(ParamError, match="train.mlm-vocab"):
        TrainSettings(mlm_vocab="tiny")


def test_training_logs_count_epochs_and_leave_out_constant_and_never_computed_series(tmp_path):
    write_logs(tmp_path / "r0", history(target=False))
    write_logs(tmp_path / "r1", history(target=True))
    r0 = {p.name for p in (tmp_path / "r0/plots/metrics").iterdir()}
    assert r0 == {"loss_source.tsv", "loss_mlm.tsv", "dev_precision.tsv", "dev_recall.tsv", "dev_f1.tsv"}
    assert "loss_target.tsv" in {p.name for p in (tmp_path / "r1/plots/metrics").iterdir()}
    lines = (tmp_path / "r0/plots/metrics/loss_source.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["step", "1", "2", "3"]  # the epoch, not a 0-based count
    summary = json.loads((tmp_path / "r0/metrics.json").read_text())
    assert summary["steps"] == 188 and summary["step"] == 3 and "loss_target" not in summary
    assert summary["dev_f1"] == 0.0  # a zero score is a measurement; only never-computed losses are left out


# --- the two losses on target labels (retrain.target-loss) ----------------------------------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def numpy_reference_loss(z: np.ndarray, Y: np.ndarray) -> float:
    """The reference, transcribed from train_tgt_model.py: ``probs = Softmax(logits)``, then
    ``partial_loss``: ``-(log_softmax(probs) * confidence).sum(1).mean()``."""
    probs = np.exp(_log_softmax(z.astype(np.float64)))
    return float(-(_log_softmax(probs) * Y).sum(axis=1).mean())


def numpy_soft_ce(z: np.ndarray, Y: np.ndarray) -> float:
    return float(-(_log_softmax(z.astype(np.float64)) * Y).sum(axis=1).mean())


@pytest.fixture()
def batch():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(7, 5)).astype(np.float32)
    Y = rng.dirichlet(np.ones(5) * 0.3, size=7).astype(np.float32)
    Y[0] = [1, 0, 0, 0, 0]  # a one-hot O row: how a pseudo entity that lost overlap resolution arrives
    return z, Y


def test_soft_cross_entropy_matches_hard_for_one_hot():
    logits = torch.randn(7, 4)
    target = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    one_hot = torch.nn.functional.one_hot(target, 4).float()
    assert torch.allclose(soft_cross_entropy(logits, one_hot), torch.nn.functional.cross_entropy(logits, target))
    soft = torch.softmax(torch.randn(7, 4), -1)
    expected = -(soft * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(logits, soft), expected)


def test_both_losses_match_an_independent_numpy_transcription(batch):
    z, Y = batch
    zt, Yt = torch.from_numpy(z), torch.from_numpy(Y)
    assert float(reference_target_loss(zt, Yt)) == pytest.approx(numpy_reference_loss(z, Y), rel=1e-5)
    assert float(soft_cross_entropy(zt, Yt)) == pytest.approx(numpy_soft_ce(z, Y), rel=1e-5)
    # sum reduction (the data-parallel shards' form) is the mean times the span count
    assert float(reference_target_loss(zt, Yt, reduction="sum")) == pytest.approx(7 * numpy_reference_loss(z, Y), rel=1e-5)
    assert TARGET_LOSSES == {"soft-ce": soft_cross_entropy, "reference": reference_target_loss}


def test_reference_loss_is_bounded_whatever_the_logits():
    """Each term lies between log(1/(e+C-1)) and log(e/(e+C-1)), so the loss of a one-hot row never
    exceeds log(e+C-1) - 0 even for a confidently wrong prediction, where cross-entropy grows without bound."""
    C = 5
    wrong = torch.tensor([[-50.0, 50.0, 0.0, 0.0, 0.0]])  # confident entity on a gold-O label
    Y = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])
    assert float(reference_target_loss(wrong, Y)) == pytest.approx(np.log(np.e + C - 1), rel=1e-5)
    assert float(soft_cross_entropy(wrong, Y)) > 99.0


def _grad_norm(loss_fn, z: torch.Tensor, Y: torch.Tensor) -> float:
    z = z.clone().requires_grad_(True)
    loss_fn(z, Y).backward()
    return float(z.grad.norm())


def test_reference_gradient_vanishes_on_a_confident_span_where_cross_entropy_keeps_pulling():
    """At p_O = 0.99 (the rest spread over four entity classes) with the label [0.9, 0.1, 0, 0, 0],
    METHOD.md §3: a gradient norm of about 0.007 against 0.133 for cross-entropy."""
    z = torch.tensor([[0.99, 0.0025, 0.0025, 0.0025, 0.0025]]).log()
    Y = torch.tensor([[0.9, 0.1, 0.0, 0.0, 0.0]])
    ref, ce = _grad_norm(reference_target_loss, z, Y), _grad_norm(soft_cross_entropy, z, Y)
    assert ref == pytest.approx(0.007, abs=0.001)
    assert ce == pytest.approx(0.133, abs=0.001)  # |p - Y|
    assert ref < ce / 10


def _minimiser_entity_mass(e: float, loss_fn) -> float:
    """argmin over predictions p = [1-q, q, 0, 0, 0] of the loss against the label [1-e, e, 0, 0, 0]
    (a fine grid; logits log p, with -inf for zeros)."""
    q = np.linspace(0.0, 1.0, 2001)
    probs = np.stack([1 - q, q, *(np.zeros_like(q),) * 3], axis=1)
    with np.errstate(divide="ignore"):
        logits = torch.from_numpy(np.log(probs)).float().clamp(min=-1e4)
    Y = torch.tensor([[1 - e, e, 0, 0, 0]], dtype=torch.float32).expand(len(q), 5)
    losses = [float(loss_fn(logits[i : i + 1], Y[i : i + 1])) for i in range(len(q))]
    return float(q[int(np.argmin(losses))])


@pytest.mark.parametrize("e", [0.05, 0.2, 0.35])
def test_reference_loss_is_minimised_by_pure_o_for_a_small_entity_mass(e):
    assert _minimiser_entity_mass(e, reference_target_loss) == 0.0
    assert _minimiser_entity_mass(e, soft_cross_entropy) == pytest.approx(e, abs=1e-3)  # CE learns the mass


@pytest.mark.parametrize("e, expected", [(0.4, 0.11), (0.5, 0.5)])
def test_reference_loss_learns_entity_mass_only_from_about_0_37(e, expected):
    assert _minimiser_entity_mass(e, reference_target_loss) == pytest.approx(expected, abs=0.01)


def test_training_with_the_reference_loss_ignores_a_small_entity_mass_that_soft_ce_learns(tmp_path):
    """Every target span labelled [0.8 O, 0.2 LOC]: trained with soft cross-entropy the model
    puts far more LOC mass on those spans than trained with the reference loss, whose minimiser
    for that label is pure O. Same seed, batches and masks; only the target loss differs."""
    from glode.features import SentenceEncoder
    from glode.model import SpanModelConfig, build_model
    from glode.scoring import score_spans
    from glode.settings import TrainSettings
    from glode.training import train
    from tests.synthetic import all_words
    from tests.gold_sentences import CLASSES, SENTENCES, encoded
    from tests.tiny_encoder import build_tiny_encoder

    encoder_dir = build_tiny_encoder(tmp_path / "tiny", words=all_words())
    loc = CLASSES.index("LOC")
    mean_loc = {}
    for loss in ("soft-ce", "reference"):
        model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
        target = SentenceEncoder(tok, 3, 64).encode(SENTENCES)
        for e in target:
            e.span_soft = np.zeros((len(e.span_word_start), len(CLASSES)), np.float32)
            e.span_soft[:, 0], e.span_soft[:, loc] = 0.8, 0.2
        cfg = TrainSettings(epochs=15, batch_size=2, seed=0, lr=1e-3, mlm_weight=0.0)
        train(model, tok, encoded(tok), cfg, target=target, progress=False, target_loss=loss)
        probs = np.concatenate([s.probs for s in score_spans(model, target, tok.pad_token_id, progress=False)])
        mean_loc[loss] = float(probs[:, loc].mean())
    assert mean_loc["soft-ce"] > 2 * mean_loc["reference"], mean_loc  # measured 0.124 against 0.029


# --- chained rounds: one optimiser and one schedule (retrain.schedule-rounds) ---------------------


def _lrs(total: int, warmup: int, steps: int, offset: int = 0) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_schedule(opt, total, warmup, offset)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_chained_slices_of_the_schedule_are_the_one_run_schedule():
    whole = _lrs(30, 3, 30)
    assert _lrs(30, 3, 10) + _lrs(30, 3, 10, offset=10) + _lrs(30, 3, 10, offset=20) == pytest.approx(whole)
    assert whole[:4] == pytest.approx([0, 1 / 3, 2 / 3, 1.0])  # transformers' warm-up, from lr 0
    assert whole[-1] == pytest.approx(1 / 27)  # then decay to 0 at 30


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


# --- gradient accumulation (train.grad-accum) -----------------------------------------------------

# four orders of the same words: the same number of sub-tokens and of candidate spans in each
# sentence, so the mean loss over a batch of four is the mean of two batches' means
WORDS = ["Anna", "lives", "in", "New", "York", "."]
FOUR_ORDERS = [WORDS, WORDS[3:5] + WORDS[:3] + WORDS[5:], [WORDS[2], WORDS[0], WORDS[1], *WORDS[3:]],
               [WORDS[1], WORDS[2], WORDS[3], WORDS[4], WORDS[0], WORDS[5]]]
FOUR_ORDERS_GOLD = [[(0, 1, "PER"), (3, 5, "LOC")], [(0, 2, "LOC"), (2, 3, "PER")], [(1, 2, "PER"), (3, 5, "LOC")],
                    [(2, 4, "LOC"), (4, 5, "PER")]]


@pytest.fixture(scope="module")
def dropout_free_encoder(tmp_path_factory):
    """The tiny encoder without dropout, so that a batch of four and two batches of two see the
    same network (dropout masks are drawn per batch shape)."""
    enc = build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())
    config = json.loads((enc / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (enc / "config.json").write_text(json.dumps(config))
    return enc


def _train(encoder_dir, batch_size: int, grad_accum: int, epochs: int = 3, sentences=FOUR_ORDERS,
           gold=FOUR_ORDERS_GOLD):
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64, dropout=0.0),
                             seed=0)
    index = {c: i for i, c in enumerate(CLASSES)}
    data = [attach_gold(e, g, index) for e, g in zip(SentenceEncoder(tok, 3, 64).encode(sentences), gold)]
    assert len({len(e.input_ids) for e in data}) == 1 and len({len(e.span_word_start) for e in data}) == 1
    cfg = TrainSettings(epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=1e-3, mlm_weight=0.0)
    history = train(model, tok, data, cfg, progress=False)
    return model, history


def test_batch_4_equals_batch_2_with_2_accumulated(dropout_free_encoder):
    """Every optimiser step of either run covers all four sentences (one batch of four, or two
    batches of two in either order), so the data per step is the same and the weights agree up
    to float32 summation order: 1e-5 absolute after three AdamW steps (the observed difference is
    ~1e-7; Adam divides by the gradient's running RMS, so a weight whose gradient is ~0 moves by
    a rounding-sensitive amount, which bounds the tolerance from below). Dropout is off and there
    is no masked LM, whose draws would differ per micro-batch."""
    whole, h_whole = _train(dropout_free_encoder, batch_size=4, grad_accum=1)
    split, h_split = _train(dropout_free_encoder, batch_size=2, grad_accum=2)
    fresh, _ = build_model(dropout_free_encoder,
                           SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64, dropout=0.0), seed=0)
    moved = 0.0
    for (k, a), b, c in zip(whole.state_dict().items(), split.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=k)
        moved = max(moved, float((a - c).abs().max()))
    assert moved > 1e-3  # the runs trained (lr 1e-3, three steps)
    assert [r["steps"] for r in h_whole] == [1, 1, 1] and [r["steps"] for r in h_split] == [2, 2, 2]
    assert [r["optimiser_steps"] for r in h_split] == [1, 1, 1] and "optimiser_steps" not in h_whole[0]
    np.testing.assert_allclose([r["loss_source"] for r in h_whole], [r["loss_source"] for r in h_split], atol=1e-5)


def test_accumulation_differs_from_stepping_each_micro_batch(dropout_free_encoder):
    """The same micro-batches without accumulation take twice the steps: a different model."""
    split, _ = _train(dropout_free_encoder, batch_size=2, grad_accum=2)
    each, history = _train(dropout_free_encoder, batch_size=2, grad_accum=1)
    assert "optimiser_steps" not in history[0]
    assert any(not torch.allclose(a, b, atol=1e-5) for a, b in zip(split.state_dict().values(), each.state_dict().values()))


def test_the_schedule_counts_optimiser_steps_and_each_epoch_ends_with_one():
    assert optimiser_steps([5, 5], 1) == 10
    assert optimiser_steps([5, 5], 2) == 6  # 2 + 2 + a group of one, per epoch
    assert optimiser_steps([5, 3], 4) == 3
    assert optimiser_steps([1], 8) == 1


def test_a_partial_last_group_steps_at_the_end_of_the_epoch(dropout_free_encoder):
    _, history = _train(dropout_free_encoder, batch_size=1, grad_accum=3, epochs=2)  # 4 micro-batches: groups of 3 and 1
    assert [(r["steps"], r["optimiser_steps"]) for r in history] == [(4, 2), (4, 2)]


def test_grad_accum_is_recorded_only_where_it_is_not_one():
    assert "grad_accum" not in TrainSettings().recorded()
    assert TrainSettings(grad_accum=4).recorded()["grad_accum"] == 4
