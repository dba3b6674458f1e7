"""Features, model save -> load -> predict round trip, MLM masking, losses, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glode.errors import GlodeError, ParamError
from glode.features import SentenceEncoder, attach_gold, collate, window_bounds
from glode.model import SpanModelConfig, SpanNERModel, build_model, load_model, mask_tokens, save_model
from glode.scoring import decode_spans, kept_entity_mask, score_spans
from glode.spans import candidate_spans
from glode.settings import RetrainSettings, TrainSettings
from glode.training import soft_cross_entropy, train
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder

SENTENCES = [
    ["Anna", "lives", "in", "New", "York", "."],
    ["Siemens", "and", "Ajax", "."],
    ["Jan", "de", "Vries", "visited", "Rotterdam", "today", "."],
]
GOLD = [[(0, 1, "PER"), (3, 5, "LOC")], [(0, 1, "ORG"), (2, 3, "ORG")], [(0, 3, "PER"), (4, 5, "LOC")]]
CLASSES = ["O", "PER", "ORG", "LOC"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())


def encoded(tokenizer, max_span_len=3, max_seq_len=64):
    enc = SentenceEncoder(tokenizer, max_span_len, max_seq_len).encode(SENTENCES)
    index = {c: i for i, c in enumerate(CLASSES)}
    return [attach_gold(e, g, index) for e, g in zip(enc, GOLD)]


def test_alignment_maps_words_to_their_pieces(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    enc = SentenceEncoder(tok, 3, 64)
    for words, e in zip(SENTENCES, enc.encode(SENTENCES)):
        assert e.input_ids[0] == enc.cls_id and e.input_ids[-1] == enc.sep_id
        assert e.n_visible == e.n_words == len(words)
        singles = e.span_word_end - e.span_word_start == 1
        for ws, ts, te in zip(e.span_word_start[singles], e.span_tok_start[singles], e.span_tok_end[singles]):
            text = tok.decode(e.input_ids[ts : te + 1].tolist()).replace("\u2581", "").strip()
            assert text.replace(" ", "") == words[ws]
        # every span of width 1..3 inside the sentence, once
        n = len(words)
        assert len(e.span_word_start) == sum(min(3, n - s) for s in range(n))
        # case counts: one case class per word in the span
        np.testing.assert_array_equal(e.span_case_counts.sum(1), e.span_word_end - e.span_word_start)


def test_bare_space_piece_is_dropped_when_the_word_has_more(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    enc = SentenceEncoder(tok, 4, 64)
    assert enc.bare_space_id is not None
    for pieces in enc.word_pieces([["香", "港", "著", "名"], ["Berlin", "(", "1", ")"]]):
        for p in pieces:
            assert not (len(p) > 1 and p[0] == enc.bare_space_id)


def test_long_sentence_is_scored_in_windows(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    words = ["Anna", "lives", "in", "Berlin", "today"] * 16
    e = SentenceEncoder(tok, 4, 16).encode([words])[0]
    assert e.windows and len(e.windows) > 2
    assert e.n_visible == e.n_words == len(words) and e.lost_spans == [] and e.cut_words == 0
    # every candidate span of the whole sentence, once, in the usual order
    assert list(zip(e.span_word_start.tolist(), e.span_word_end.tolist())) == candidate_spans(len(words), 4)
    rows = np.concatenate([w.rows for w in e.windows])
    assert sorted(rows.tolist()) == list(range(len(e.span_word_start)))
    whole = SentenceEncoder(tok, 4, 512).encode([words])[0]
    np.testing.assert_array_equal(e.span_case_counts, whole.span_case_counts)
    for w in e.windows:
        assert len(w.input_ids) <= 16 and w.input_ids[0] == whole.input_ids[0] and w.input_ids[-1] == whole.input_ids[-1]
        np.testing.assert_array_equal(w.span_word_start, e.span_word_start[w.rows])
        for ws, we, ts, te in zip(w.span_word_start, w.span_word_end, w.span_tok_start, w.span_tok_end):
            text = tok.decode(w.input_ids[ts : te + 1].tolist()).replace("\u2581", "").replace(" ", "")
            assert text == "".join(words[ws:we])


def test_window_scores_equal_scoring_the_window_alone(encoder_dir):
    """Each span's probabilities come from the window it was assigned to, and no span is left unscored."""
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=20), seed=0)
    enc = SentenceEncoder(tok, 3, 20)
    words = ["Jan", "de", "Vries", "visited", "Rotterdam", "and", "Madrid", "."] * 6
    (e,) = enc.encode([words])
    (sc,) = score_spans(model, [e], tok.pad_token_id, batch_size=2, progress=False)
    assert sc.probs.shape == (len(e.span_word_start), len(CLASSES))
    np.testing.assert_allclose(sc.probs.sum(1), 1, atol=1e-5)
    for w, (a, b) in zip(e.windows, window_bounds([len(p) for p in enc.word_pieces([words])[0]], 18, 2)):
        (alone,) = enc.encode([words[a:b]])
        assert alone.windows is None
        (ref,) = score_spans(model, [alone], tok.pad_token_id, progress=False)
        index = {(int(s) + a, int(t) + a): i for i, (s, t) in enumerate(zip(alone.span_word_start, alone.span_word_end))}
        for row in w.rows:
            key = (int(e.span_word_start[row]), int(e.span_word_end[row]))
            np.testing.assert_allclose(sc.probs[row], ref.probs[index[key]], rtol=1e-5, atol=1e-6)


def test_window_bounds_cover_every_span_and_progress():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = rng.integers(1, 6, size=int(rng.integers(1, 60))).tolist()
        budget, cap = int(rng.integers(5, 20)), int(rng.integers(1, 5))
        bounds = window_bounds(lengths, budget, cap - 1)
        assert bounds[0][0] == 0 and bounds[-1][1] == len(lengths)
        for (a, b), (a2, b2) in zip(bounds, bounds[1:]):
            assert a < a2 and b < b2
        for a, b in bounds:
            assert sum(lengths[a:b]) <= budget
        if budget >= 5 * (cap + 1):  # room for cap - 1 shared words plus the next word: nothing is lost
            assert all(b - a2 >= cap - 1 for (a, b), (a2, b2) in zip(bounds, bounds[1:]))
            for s, t in candidate_spans(len(lengths), cap):
                assert any(a <= s and t <= b for a, b in bounds)


def test_huge_words_are_cut_and_lost_spans_counted(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    enc = SentenceEncoder(tok, 3, 8)
    words = ["a" * 30, "Anna", "b" * 12, "Berlin"]  # one word beyond the 6-piece budget, windows of < 3 words
    (e,) = enc.encode([words])
    pieces = [len(p) for p in enc.word_pieces([words])[0]]
    assert e.cut_words == sum(n > 6 for n in pieces) >= 1 and e.lost_spans
    assert all(len(w.input_ids) <= 8 for w in e.units())
    scored = set(zip(e.span_word_start.tolist(), e.span_word_end.tolist()))
    assert scored.isdisjoint(e.lost_spans)
    assert scored | set(e.lost_spans) == set(candidate_spans(len(words), 3))
    assert {(i, i + 1) for i in range(len(words))} <= scored  # every word is still scored


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


def test_gold_labels_attached_to_matching_spans(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    e = encoded(tok)[2]
    labelled = {(int(s), int(t)): CLASSES[l] for s, t, l in zip(e.span_word_start, e.span_word_end, e.span_labels) if l}
    assert labelled == {(0, 3): "PER", (4, 5): "LOC"}


def _trained(encoder_dir, freeze: bool, seed: int = 0, epochs: int = 2, target_class: int | None = None,
             mlm_weight: float = TrainSettings.mlm_weight):
    """A model trained on the gold sentences; with ``target_class``, also on those sentences as a
    target corpus whose soft labels put every candidate span in that class."""
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=seed)
    data = encoded(tok)
    target = None
    if target_class is not None:
        target = SentenceEncoder(tok, 3, 64).encode(SENTENCES)
        for e in target:
            e.span_soft = np.zeros((len(e.span_word_start), len(CLASSES)), np.float32)
            e.span_soft[:, target_class] = 1.0
    cfg = TrainSettings(epochs=epochs, batch_size=2, seed=seed, lr=1e-3, freeze_word_embeddings=freeze, mlm_weight=mlm_weight)
    train(model, tok, data, cfg, mlm_corpus=data, target=target, progress=False)
    return model, tok, data


@pytest.mark.parametrize("freeze", [True, False])
def test_save_load_predict_round_trip(encoder_dir, tmp_path, freeze):
    model, tok, data = _trained(encoder_dir, freeze)
    before = score_spans(model, data, tok.pad_token_id, progress=False)
    out = save_model(model, tok, tmp_path / "m", encoder_dir, train_params={"seed": 0})
    meta = json.loads((out / "glode_model.json").read_text())
    assert meta["classes"] == CLASSES and meta["label2id"]["LOC"] == 3
    assert (meta["external_word_embeddings"] is not None) == freeze
    assert not [p for p in tmp_path.iterdir() if p.name != "m"], "temporary folders left behind"
    loaded, tok2, _ = load_model(out)
    after = score_spans(loaded, data, tok2.pad_token_id, progress=False)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.probs, b.probs)
    assert [decode_spans(d, s.probs, CLASSES) for d, s in zip(data, before)] == [
        decode_spans(d, s.probs, CLASSES) for d, s in zip(data, after)
    ]


def test_training_is_deterministic_and_learns(encoder_dir):
    m1, tok, data = _trained(encoder_dir, True, epochs=6)
    m2, _, _ = _trained(encoder_dir, True, epochs=6)
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


def test_load_rejects_foreign_or_future_folders(encoder_dir, tmp_path):
    with pytest.raises(GlodeError, match="not a glode model folder"):
        load_model(tmp_path)
    model, tok, _ = _trained(encoder_dir, True, epochs=1)
    out = save_model(model, tok, tmp_path / "m", encoder_dir)
    meta = json.loads((out / "glode_model.json").read_text())
    meta["format_version"] = 99
    (out / "glode_model.json").write_text(json.dumps(meta))
    with pytest.raises(GlodeError, match="format version 99"):
        load_model(out)


def test_incomplete_model_folders_say_what_is_missing(encoder_dir, tmp_path):
    """Each used to be a KeyError, a hub-connection OSError or 'not a glode model folder'."""
    import shutil

    with pytest.raises(GlodeError, match="no such model folder"):
        load_model(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(GlodeError, match="is a file, not a model folder"):
        load_model(tmp_path / "file")
    model, tok, _ = _trained(encoder_dir, True, epochs=1)
    good = save_model(model, tok, tmp_path / "good", encoder_dir)

    def broken(name, edit):
        folder = shutil.copytree(good, tmp_path / name)
        edit(folder)
        return folder

    def drop_key(key):
        def edit(folder):
            meta = json.loads((folder / "glode_model.json").read_text())
            del meta[key]
            (folder / "glode_model.json").write_text(json.dumps(meta))
        return edit

    cases = {
        "no-config": (drop_key("config"), "no 'config' entry"),
        "no-config-json": (lambda f: (f / "config.json").unlink(), "config.json is missing"),
        "no-tokenizer": (lambda f: (f / "tokenizer_config.json").unlink(), "tokenizer_config.json is missing"),
        "no-weights": (lambda f: (f / "weights.safetensors").unlink(), "weights.safetensors is missing"),
    }
    for name, (edit, text) in cases.items():
        with pytest.raises(GlodeError, match=text) as err:
            load_model(broken(name, edit))
        assert "train_source and train_target stages" in str(err.value), str(err.value)
    load_model(good)


def test_mask_tokens_rate_and_specials():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (64, 50))
    ids[:, 0], ids[:, -1] = 0, 2
    attn = torch.ones_like(ids)
    attn[:, 40:] = 0
    ids[:, 40:] = 1
    masked, labels = mask_tokens(ids, attn, {0, 1, 2}, 99, 0.25, gen)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 40:].any()
    assert (masked[chosen] == 99).all() and (masked[~chosen] == ids[~chosen]).all()
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.sum().item() / (64 * 38)
    assert 0.22 < rate < 0.28


def test_soft_cross_entropy_matches_hard_for_one_hot():
    logits = torch.randn(7, 4)
    target = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    one_hot = torch.nn.functional.one_hot(target, 4).float()
    assert torch.allclose(soft_cross_entropy(logits, one_hot), torch.nn.functional.cross_entropy(logits, target))
    soft = torch.softmax(torch.randn(7, 4), -1)
    expected = -(soft * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(logits, soft), expected)


def test_kept_entity_mask_follows_overlap_resolution(encoder_dir):
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    e = encoded(tok)[0]
    probs = np.zeros((len(e.span_word_start), 4), dtype=np.float32)
    probs[:, 0] = 1.0
    spans = list(zip(e.span_word_start.tolist(), e.span_word_end.tolist()))
    for (s, t), label, p in [((3, 5), 3, 0.9), ((4, 5), 3, 0.8), ((0, 1), 1, 0.7)]:
        i = spans.index((s, t))
        probs[i] = 0
        probs[i, label], probs[i, 0] = p, 1 - p
    mask = kept_entity_mask(e, probs)
    assert {spans[i] for i in np.nonzero(mask)[0]} == {(3, 5), (0, 1)}


def test_caseless_words_add_no_case_counts(encoder_dir):
    from glode.features import word_case

    assert [word_case(w) for w in ["Berlin", "USA", "paris", "1990", "(", "جامعة", "北京"]] == [2, 0, 1, 3, 4, None, None]
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    e = SentenceEncoder(tok, 2, 64).encode([["جامعة", "Berlin"]])[0]
    counts = {(int(s), int(t)): c.tolist() for s, t, c in zip(e.span_word_start, e.span_word_end, e.span_case_counts)}
    assert counts[(0, 1)] == [0, 0, 0, 0, 0] and counts[(0, 2)] == [0, 0, 1, 0, 0]


def test_target_pseudo_labels_steer_training(encoder_dir):
    """Self-training only works if the target loss reaches the gradient: the same run with
    every target span labelled LOC instead of O must raise the model's LOC probability there."""
    loc = CLASSES.index("LOC")
    mean_loc = []
    for target_class in (0, loc):
        model, tok, data = _trained(encoder_dir, True, target_class=target_class, mlm_weight=0.0)
        probs = np.concatenate([s.probs for s in score_spans(model, data, tok.pad_token_id, progress=False)])
        mean_loc.append(float(probs[:, loc].mean()))
    assert mean_loc[1] > mean_loc[0] + 0.1, mean_loc


def test_mlm_weight_scales_the_masked_lm_loss(encoder_dir):
    """Two runs that draw the same batches and masks but weight the MLM loss differently must
    end with different weights (a loss left out of the sum would make them identical)."""
    m1, _, _ = _trained(encoder_dir, True, target_class=0, mlm_weight=0.5)
    m2, _, _ = _trained(encoder_dir, True, target_class=0, mlm_weight=1.0)
    differ = [k for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()) if not torch.equal(a, b)]
    assert any(k.startswith("encoder.") for k in differ), differ


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


def test_chain_init_starts_r1_from_the_encoder_and_later_rounds_from_the_previous_model(encoder_dir, tmp_path):
    from glode.steps.train_target import round_start

    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    r0 = save_model(model, tok, tmp_path / "r0", encoder_dir, train_params={}, extra={"round": "r0"})
    r1 = save_model(model, tok, tmp_path / "r1", encoder_dir, train_params={}, extra={"round": "r1"})
    assert round_start("chain", r0) == "encoder" and round_start("chain", r1) == "previous"
    assert round_start("encoder", r1) == "encoder" and round_start("previous", r0) == "previous"
    with pytest.raises(ParamError, match="retrain.init"):
        RetrainSettings(init="restart")


def test_mlm_softmax_over_a_corpus_vocabulary_matches_the_full_logits_restricted(encoder_dir):
    """With ``vocab`` the loss is the cross-entropy of the full logits' columns ``vocab`` (an
    independent computation from the full head); with every id it is the full loss itself; a
    masked id outside ``vocab`` is refused rather than scored against a wrong column."""
    from glode.training import corpus_vocabulary

    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    model.eval()
    data = encoded(tok)
    special = set(tok.all_special_ids)
    vocab = corpus_vocabulary(data, special)
    assert vocab.tolist() == sorted({int(i) for e in data for i in e.input_ids} - special)
    batch = collate(data, tok.pad_token_id)
    ids, labels = mask_tokens(batch.input_ids, batch.attention_mask, special, tok.mask_token_id, 0.5,
                              torch.Generator().manual_seed(0))
    picked = labels != -100
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids, attention_mask=batch.attention_mask).last_hidden_state[picked]
        full = model.mlm_head(hidden, model.encoder.get_input_embeddings().weight)
        oracle = torch.nn.functional.cross_entropy(full[:, vocab], torch.searchsorted(vocab, labels[picked]))
        restricted = model.mlm_loss(ids, batch.attention_mask, labels, vocab=vocab)
        everything = model.mlm_loss(ids, batch.attention_mask, labels, vocab=torch.arange(full.shape[1]))
        plain = model.mlm_loss(ids, batch.attention_mask, labels)
    assert float(restricted) == pytest.approx(float(oracle), rel=1e-5)
    assert float(everything) == pytest.approx(float(plain), rel=1e-5)
    assert float(restricted) < float(plain)  # fewer competitors in the softmax
    with pytest.raises(ValueError, match="not in the MLM vocabulary"):
        model.mlm_loss(ids, batch.attention_mask, labels, vocab=vocab[vocab != labels[picked][0]])


def test_training_with_the_corpus_mlm_vocabulary_differs_from_full_and_is_recorded(encoder_dir, tmp_path):
    model_a, tok, data = _trained(encoder_dir, True, target_class=0, mlm_weight=1.0)
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
