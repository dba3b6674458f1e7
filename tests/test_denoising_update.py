"""glode/denoising/update.py: one denoising step, denoise(): the combination rule, the progressive
(EMA) update, the agreement gate, per-class confidence selection, repair of planted noise, the
step's summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glode.denoising.update import DenoiseInput, agreement_gate, combine, progressive_update, select_confident
from glode.errors import ParamError
from glode.label_quality import label_movement, soft_scores
from glode.settings import DenoiseSettings
from tests.denoising_fixture import LOC, O, ORG, PER, clusters, one_hot, small_problem, step


# ---------------------------------------------------------------- combination rule


def test_combine_splits_mass_between_disagreeing_views():
    G = np.array([[False, True, True, False]])  # {PER, LOC}
    L = np.array([[False, True, False, False]])  # {PER}
    u = combine(G, L, one_hot(np.array([O]), 4))
    np.testing.assert_allclose(u, [[0.0, 0.75, 0.25, 0.0]])


def test_combine_agreement_and_one_empty_view():
    Y = one_hot(np.array([O, O]), 4)
    G = np.array([[False, False, True, False], [False, False, False, False]])
    L = np.array([[False, False, True, False], [False, True, False, True]])
    u = combine(G, L, Y)
    np.testing.assert_allclose(u, [[0, 0, 1, 0], [0, 0.5, 0, 0.5]])


def test_combine_both_empty_keeps_label():
    Y = np.array([[0.1, 0.6, 0.3, 0.0]], dtype=np.float32)
    empty = np.zeros((1, 4), dtype=bool)
    np.testing.assert_array_equal(combine(empty, empty, Y), Y)
    np.testing.assert_allclose(progressive_update(Y, Y, 0.5), Y, rtol=1e-6)


def test_progressive_update_is_normalised_ema():
    Y = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    u = np.array([[0.0, 0.75, 0.25, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(progressive_update(Y, u, 0.8), [[0.8, 0.15, 0.05, 0.0]], rtol=1e-6)


def test_combine_and_update_row_by_row_equal_the_whole_array(monkeypatch):
    """combine and progressive_update compute a few rows at a time (bounded float64
    temporaries); the bytes are those of one pass over every row."""
    import glode.denoising.update as update

    rng = np.random.default_rng(5)
    G, L = rng.random((101, 4)) < 0.3, rng.random((101, 4)) < 0.3
    Y = rng.dirichlet(np.ones(4), 101).astype(np.float32)
    whole_u = combine(G, L, Y)
    whole = progressive_update(Y, whole_u, 0.8)
    monkeypatch.setattr(update, "ROWS_AT_A_TIME", 7)
    u = combine(G, L, Y)
    assert u.dtype == np.float32 and u.tobytes() == whole_u.tobytes()
    assert progressive_update(Y, u, 0.8).tobytes() == whole.tobytes()
    assert ((G.sum(1) == 0) & (L.sum(1) == 0)).any()  # rows that keep Y are among them


def test_bad_settings_are_refused_by_the_settings_naming_the_params_key_and_a_bad_m_by_the_step():
    for kwargs, key in [({"prototype": "median"}, "denoise.prototype"), ({"index": "hnsw"}, "denoise.index"),
                        ({"o_keep_rate": 2}, "denoise.o-keep-rate")]:
        with pytest.raises(ParamError) as err:
            DenoiseSettings(k=10, **kwargs)
        assert err.value.name == key
    Q, Y, S, s_labels, _ = small_problem()
    with pytest.raises(ValueError, match="EMA weight m must lie in"):
        step(Q, Y, S, s_labels, m=1.5, k=10)


def test_step_input_shapes_are_checked():
    Q, Y, S, s_labels, _ = small_problem()
    with pytest.raises(ValueError, match="must be 2-d with the same width"):
        DenoiseInput(Q[:, :3], Y, S, s_labels)
    with pytest.raises(ValueError, match="s_labels"):
        DenoiseInput(Q, Y, S, s_labels[:-1])


# ---------------------------------------------------------------- whole step


@pytest.mark.parametrize("use_global, use_local", [(True, True), (True, False), (False, True)])
def test_planted_noise_is_repaired(use_global, use_local):
    """20% flipped labels on separated clusters: one step with m=0 (Y_new = u) repairs them."""
    X, labels = clusters(3000, weights=(0.4, 0.2, 0.2, 0.2), seed=1)
    Q, gold = X[:2400], labels[:2400]
    S, s_labels = X[2400:], labels[2400:]
    rng = np.random.default_rng(2)
    noisy = gold.copy()
    flipped = rng.random(gold.shape[0]) < 0.2
    noisy[flipped] = (gold[flipped] + rng.integers(1, 4, flipped.sum())) % 4
    r = step(Q, one_hot(noisy, 4), S, s_labels, m=0.0, use_global=use_global, use_local=use_local)
    repaired = (r.y_new[flipped] == gold[flipped]).mean()
    corrupted = (r.y_new[~flipped] != gold[~flipped]).mean()
    assert repaired >= 0.9, repaired
    assert corrupted <= 0.02, corrupted
    s = r.summary(gold=gold)
    assert s["gold"]["after"]["f1"] > s["gold"]["before"]["f1"] + 0.1


def test_a_view_switched_off_admits_nothing_and_both_off_keep_the_labels():
    Q, Y, S, s_labels, _ = small_problem()
    Y = 0.7 * Y + 0.3 / 4
    off = step(Q, Y, S, s_labels, m=0.5, k=10**6, use_global=False, use_local=False)  # k unused
    np.testing.assert_allclose(off.Y_new, Y, rtol=1e-6)
    assert not off.G.any() and not off.L.any() and (off.n == 0).all()
    local = step(Q, Y, S, s_labels, m=0.5, k=10, use_global=False)
    assert not local.G.any() and local.L.any()
    has = local.L.any(1)
    np.testing.assert_allclose(local.u[has], local.L[has] / local.L[has].sum(1, keepdims=True))
    glob = step(Q, Y, S, s_labels, m=0.5, k=10, use_local=False)
    assert not glob.L.any() and glob.G.any()


def test_summary_is_json_and_consistent():
    Q, Y, S, s_labels, gold = small_problem(n=600)
    rng = np.random.default_rng(0)
    noisy = gold.copy()
    flip = rng.random(600) < 0.2
    noisy[flip] = rng.integers(0, 4, flip.sum())
    gold_partial = gold.copy()
    gold_partial[:50] = -1
    r = step(Q, one_hot(noisy, 4), S, s_labels, m=0.0, k=20, o_keep_rate=1.0)
    s = r.summary(gold=gold_partial, class_names=["O", "PER", "LOC", "ORG"])
    json.dumps(s, allow_nan=False)
    ch = s["changed"]
    assert ch["total"] == int((r.y_prev != r.y_new).sum())
    assert ch["total"] == ch["o_to_entity"] + ch["entity_to_o"] + ch["type_swap"]
    assert sum(s["per_class_after"].values()) == 600
    assert s["gold"]["known"] == 550
    before = s["gold"]["before"]
    known = gold_partial >= 0
    correct = int(((noisy == gold) & (noisy != 0) & known).sum())
    assert before["correct"] == correct
    assert before["precision"] == pytest.approx(correct / int(((noisy != 0) & known).sum()))
    assert 0.0 <= s["view_agreement"]["intersect_rate"] <= 1.0


# ---------------------------------------------------------------- agreement gate


def test_agreement_gate_refuses_only_unadmitted_top_class_changes():
    Y = np.array([[0.6, 0.4, 0, 0], [0.6, 0.4, 0, 0], [0.2, 0.8, 0, 0], [0.1, 0.5, 0.4, 0]], np.float32)
    Y_new = np.array([[0.3, 0.7, 0, 0], [0.3, 0.7, 0, 0], [0.1, 0.9, 0, 0], [0.1, 0.4, 0.5, 0]], np.float32)
    admitted = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]], bool)
    out, refused = agreement_gate(Y, Y_new, admitted)
    assert refused.tolist() == [False, True, False, True]
    np.testing.assert_array_equal(out[0], Y_new[0])  # O -> PER with PER admitted: accepted
    np.testing.assert_array_equal(out[1], Y[1])  # O -> PER, PER not admitted: the old label stays
    np.testing.assert_array_equal(out[2], Y_new[2])  # same top class: the sharpening applies ungated
    np.testing.assert_array_equal(out[3], Y[3])


def test_gate_agree_changes_only_where_views_agree_on_the_new_class():
    """Planted noise with a weak EMA: every accepted flip goes to a class both views admit, and the
    gated labels differ from the ungated ones exactly on the refused spans."""
    X, labels = clusters(3000, weights=(0.4, 0.2, 0.2, 0.2), noise=0.5, seed=3)
    Q, gold, S, s_labels = X[:2400], labels[:2400], X[2400:], labels[2400:]
    rng = np.random.default_rng(4)
    noisy = gold.copy()
    flipped = rng.random(gold.shape[0]) < 0.3
    noisy[flipped] = (gold[flipped] + rng.integers(1, 4, flipped.sum())) % 4
    Y = one_hot(noisy, 4)
    free = step(Q, Y, S, s_labels, m=0.0)
    gated = step(Q, Y, S, s_labels, m=0.0, gate="agree")
    changed = gated.y_new != gated.y_prev
    both = gated.G & gated.L
    assert changed.any() and gated.gated.any()
    assert both[np.arange(len(changed)), gated.y_new][changed].all()
    assert ((free.y_new != gated.y_new) == gated.gated).all()
    np.testing.assert_array_equal(gated.Y_new[gated.gated], Y[gated.gated])
    assert gated.summary()["changed"]["refused_by_gate"] == int(gated.gated.sum())
    # one view off: the gate follows the view in use
    local_only = step(Q, Y, S, s_labels, m=0.0, use_global=False, gate="agree")
    moved = local_only.y_new != local_only.y_prev
    assert moved.any()
    assert local_only.L[np.arange(len(moved)), local_only.y_new][moved].all()
    # no view: nothing may change
    off = step(Q, Y, S, s_labels, m=0.0, use_global=False, use_local=False, gate="agree")
    assert (off.y_new == off.y_prev).all()


def test_unknown_gate_is_param_error():
    Q, Y, S, s_labels, _ = small_problem()
    with pytest.raises(ParamError) as err:
        step(Q, Y, S, s_labels, m=0.5, k=10, gate="both")
    assert err.value.name == "denoise.gate"


# ---------------------------------------------------------------- the step's summary


def test_summary_reports_soft_scores_and_movement_before_and_after():
    Q, Y, S, s_labels, gold = small_problem(n=600)
    r = step(Q, Y, S, s_labels, m=0.8, k=20, o_keep_rate=1.0)
    s = r.summary(gold=gold)
    np.testing.assert_array_equal(r.Y_prev, Y)
    assert s["gold"]["soft_before"] == soft_scores(Y, gold)
    assert s["gold"]["soft_after"] == soft_scores(r.Y_new, gold)
    assert s["soft_change"] == label_movement(Y, r.Y_new, [str(c) for c in range(4)])
    json.dumps(s, allow_nan=False)


# ---------------------------------------------------------------- per-class confidence selection


def test_select_confident_keeps_the_top_share_of_each_entity_class():
    y = np.array([PER] * 4 + [LOC] * 2 + [O] * 2)
    Y = one_hot(y, 4)
    conf = np.array([0.9, 0.5, 0.7, 0.6, 0.3, 0.8, 0.99, 0.1])
    out, demoted = select_confident(Y, conf, 0.5)
    assert demoted.tolist() == [False, True, False, True, True, False, False, False]
    np.testing.assert_array_equal(out[demoted], one_hot(np.array([O, O, O]), 4))
    np.testing.assert_array_equal(out[~demoted], Y[~demoted])
    soft, _ = select_confident(Y, conf, 0.5, rest_weight=0.25)
    np.testing.assert_allclose(soft[1], [0.75, 0.25, 0, 0])
    np.testing.assert_allclose(soft.sum(1), 1.0)
    same, none = select_confident(Y, conf, 1.0)
    assert same is Y and not none.any()
    # ceil: one span of a class is always kept, whatever the share
    _, d = select_confident(one_hot(np.array([ORG]), 4), np.array([0.1]), 0.01)
    assert not d.any()


def test_select_keeps_class_shares_and_raises_precision_when_confidence_ranks_labels():
    """Noisy entity labels whose confidence is higher where they are right: keeping the
    confident half of each class raises the pseudo-label precision, and each class keeps half
    its entities even though one class is much noisier than the other."""
    rng = np.random.default_rng(7)
    n = 4000
    gold = rng.choice(4, size=n, p=(0.7, 0.1, 0.1, 0.1))
    label = gold.copy()
    wrong = rng.random(n) < np.where(gold == PER, 0.5, 0.1)
    label[wrong] = (gold[wrong] + rng.integers(1, 4, wrong.sum())) % 4
    conf = np.clip(np.where(wrong, 0.45, 0.75) + 0.2 * rng.standard_normal(n), 0.3, 0.99)
    Y = (np.eye(4)[label] * conf[:, None] + (1 - conf[:, None]) * np.eye(4)[O]).astype(np.float32)
    Q, _ = clusters(n, seed=8)
    S, s_labels = clusters(400, seed=9)
    off = step(Q, Y, S, s_labels, m=1.0, k=10, use_global=False, use_local=False)
    on = step(Q, Y, S, s_labels, m=1.0, k=10, use_global=False, use_local=False, select=0.5)
    before, after = off.summary(gold=gold)["gold"]["after"], on.summary(gold=gold)["gold"]["after"]
    assert after["precision"] > before["precision"] + 0.1
    per_class_before = np.bincount(off.y_new, minlength=4)[1:]
    per_class_after = np.bincount(on.y_new, minlength=4)[1:]
    np.testing.assert_array_equal(per_class_after, np.ceil(per_class_before * 0.5 - 1e-9))
    s = on.summary()
    assert s["select"]["demoted"] == int((per_class_before - per_class_after).sum())
    assert list(s["select"]["demoted_per_class"].values())[1:] == (per_class_before - per_class_after).tolist()
    for kwargs, name in [({"select": 0.0}, "denoise.select"), ({"select_rest": 1.5}, "denoise.select-rest")]:
        with pytest.raises(ParamError) as err:
            step(Q, Y, S, s_labels, m=0.5, k=10, **kwargs)
        assert err.value.name == name
