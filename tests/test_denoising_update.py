"""Global-local denoising (glode/denoising/: views and update) and the label-quality scores (glode/label_quality.py):
the combination rule, both views, kNN details, repair of planted noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glode.denoising.update import (DenoiseInput, DenoiseResult, agreement_gate, combine, denoise, progressive_update,
                                    select_confident)
from glode.denoising.views import (build_bank, build_index, compute_prototypes, global_view, interleave_order,
                                   local_view, neighbour_counts)
from glode.errors import ParamError
from glode.label_quality import label_movement, soft_scores, span_prf
from glode.settings import DenoiseSettings, IndexOptions

O, PER, LOC, ORG = 0, 1, 2, 3


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def clusters(n: int, n_classes: int = 4, d: int = 16, noise: float = 0.15, seed: int = 0,
             weights: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated unit-vector clusters, one per class: (vectors, class ids)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_classes, d)))
    labels = rng.choice(n_classes, size=n, p=weights)
    return unit(centres[labels] + noise * rng.standard_normal((n, d))), labels


def step(Q, Y, S, s_labels, m, *, nlist=None, **settings) -> DenoiseResult:
    """One denoising step at the settings' defaults (params.yaml's) but the plain step's
    ``gate="none"`` unless given; ``nlist`` fixes the IVF's lists."""
    settings.setdefault("gate", "none")
    return denoise(DenoiseInput(Q, Y, S, s_labels), DenoiseSettings(**settings), m, IndexOptions(nlist=nlist))


def small_problem(n: int = 400, m: int = 200, seed: int = 0):
    """Target vectors + one-hot labels and a source bank from the same clusters."""
    X, y = clusters(n + m, seed=seed)
    return X[:n], one_hot(y[:n], 4), X[n:], y[n:], y[:n]


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


# ---------------------------------------------------------------- global and local views


def test_global_view_admits_o_when_nearest_prototype_even_below_threshold():
    protos = np.eye(3, 4, dtype=np.float32)  # O, PER, LOC along the first three axes
    Q = unit(np.array([[0.9, 0.1, 0.0, 0.4],    # labelled O, close to O
                       [0.3, 0.25, 0.0, 0.9],   # labelled O, O nearest but below tau_O
                       [0.1, 0.95, 0.0, 0.1],   # PER, above the PER threshold
                       [0.3, 0.4, 0.0, 0.85],   # PER, below it
                       [0.0, 0.2, 0.9, 0.1]]))  # LOC
    y_hat = np.array([O, O, PER, PER, LOC])
    g, tau, G = global_view(Q, y_hat, protos, np.ones(3, bool))
    assert g[1, O] < tau[O]
    assert G[1].tolist() == [True, False, False]
    assert G[2].tolist() == [False, True, False]
    assert not G[3].any()  # neither above a threshold nor nearest to O
    # the reference's threshold: the class's sum over its spans / (count + 1)
    np.testing.assert_allclose(tau[PER], g[2:4, PER].sum() / 3, rtol=1e-6)
    np.testing.assert_allclose(tau[LOC], g[4, LOC] / 2, rtol=1e-6)
    assert G[4, LOC]  # a lone span beats its own shrunk mean


def test_class_without_target_spans_has_threshold_zero():
    """The reference: a class no target span carries has thresholds 0 (not +inf), so a span
    close to its (source) prototype, or with one such neighbour, admits it."""
    Q, Y, S, s_labels, _ = small_problem()
    Y = Y.copy()
    Y[Y[:, ORG] == 1] = one_hot(np.array([PER]), 4)  # no target span carries ORG any more
    r = step(Q, Y, S, s_labels, m=0.5, k=20, o_keep_rate=1.0)
    assert r.tau_global[ORG] == 0.0 and r.tau_local[ORG] == 0.0
    assert r.has_prototype[ORG]  # source spans still give it a prototype
    np.testing.assert_array_equal(r.G[:, ORG], r.g[:, ORG] > 0)
    np.testing.assert_array_equal(r.L[:, ORG], r.n[:, ORG] > 0)
    assert r.G[:, ORG].any() and r.L[:, ORG].any()
    assert r.summary()["tau_global"]["3"] == 0.0


def test_local_view_o_strict_plurality():
    n = np.array([[5, 4, 1, 0],   # O strictly most frequent, below tau_O -> admitted by plurality
                  [4, 4, 2, 0],   # tie -> not admitted
                  [20, 0, 0, 0],  # labelled O
                  [0, 10, 0, 0]], dtype=np.int32)
    y_hat = np.array([PER, PER, O, PER])
    tau, L = local_view(n, y_hat, 0.9)
    assert tau[O] == pytest.approx(0.9 * 20 / 2)
    assert L[0, O] and not L[1, O]
    assert tau[PER] == pytest.approx(0.9 * (4 + 4 + 10) / 4)
    assert L[:, PER].tolist() == [False, False, False, True]


# ---------------------------------------------------------------- kNN


def test_self_excluded_from_neighbours():
    v = unit(np.array([[1.0, 0.0, 0.0]]))
    Q = np.concatenate([v, unit(np.array([[0.0, 1.0, 0.0]]))])
    Y = one_hot(np.array([PER, LOC]), 4)
    S = np.concatenate([v, unit(np.array([[0.0, 0.0, 1.0], [0.0, 0.1, 1.0]]))])  # identical copy of span 0
    s_labels = np.array([LOC, ORG, ORG])
    bank = build_bank(S, s_labels, Q, Y.argmax(1), o_keep_rate=0.03, seed=0)
    assert bank.size == 5 and bank.target_pos.tolist() == [3, 4]
    index = build_index(bank.vectors, "exact", nprobe=1, seed=0, options=IndexOptions())
    n, missing = neighbour_counts(Q, bank, index, 1, 4, chunk_size=IndexOptions().chunk_size)
    assert n[0].tolist() == [0, 0, 1, 0]  # the identical source copy (LOC), never itself (PER)
    n, _ = neighbour_counts(Q, bank, index, 4, 4, chunk_size=IndexOptions().chunk_size)
    assert n[0].tolist() == [0, 0, 2, 2] and n[1].tolist() == [0, 1, 1, 2]
    assert missing == 0


def test_chunked_counts_equal_unchunked():
    Q, Y, S, s_labels, _ = small_problem(n=500)
    bank = build_bank(S, s_labels, Q, Y.argmax(1), o_keep_rate=0.5, seed=3)
    index = build_index(bank.vectors, "exact", nprobe=1, seed=0, options=IndexOptions())
    whole, _ = neighbour_counts(Q, bank, index, 25, 4, chunk_size=10_000)
    chunked, _ = neighbour_counts(Q, bank, index, 25, 4, chunk_size=7)
    np.testing.assert_array_equal(whole, chunked)
    assert (whole.sum(1) == 25).all()


def test_k_beyond_the_memory_bank_is_param_error_naming_k():
    """The one check of k that needs the data (k >= 1 is the settings')."""
    Q, Y, S, s_labels, _ = small_problem()
    with pytest.raises(ParamError) as err:
        step(Q, Y, S, s_labels, m=0.9, k=10_000)
    assert err.value.name == "k"
    msg = str(err.value)
    assert "memory bank" in msg and "denoise.o-keep-rate" in msg and "k=10000" in msg
    with pytest.raises(ParamError, match="parameter 'k': 0 is not allowed"):
        DenoiseSettings(k=0)


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


def test_deterministic_for_exact_and_ivf():
    Q, Y, S, s_labels, _ = small_problem(n=1500, m=500)
    for index in ("exact", "ivf"):
        kw = dict(m=0.7, k=30, o_keep_rate=0.2, seed=5, index=index, nlist=8, nprobe=3)
        a, b = step(Q, Y, S, s_labels, **kw), step(Q, Y, S, s_labels, **kw)
        for field in ("Y_new", "g", "G", "n", "L", "u", "prototypes"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.index_kind == index
        assert (a.n.sum(1) == 30).all() if index == "exact" else (a.n.sum(1) <= 30).all()
    other = step(Q, Y, S, s_labels, m=0.7, k=30, o_keep_rate=0.2, seed=6)
    assert other.bank_size == a.bank_size  # same sample size, different rows
    assert not np.array_equal(other.n, a.n)


def test_auto_index_switches_on_bank_size():
    Q, Y, S, s_labels, _ = small_problem()
    small = step(Q, Y, S, s_labels, m=0.9, k=10, index="auto", auto_threshold=10_000)
    large = step(Q, Y, S, s_labels, m=0.9, k=10, index="auto", auto_threshold=10, nlist=4, nprobe=4)
    assert small.index_kind == "exact" and large.index_kind == "ivf"
    np.testing.assert_array_equal(small.n, large.n)  # probing every list is exact


def test_view_switches():
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


def _paired_visits(S, s_labels, Q, y_hat):
    """The reference's visiting order written as a loop: the source and target sides advance
    together, each side's next row taken when it is due at its own rate."""
    i = j = 0
    M, N = len(S), len(Q)
    while i < M or j < N:
        if j >= N or (i < M and (i + 0.5) / M <= (j + 0.5) / N):
            yield S[i], s_labels[i]
            i += 1
        else:
            yield Q[j], y_hat[j]
            j += 1


def test_ema_prototypes_match_loop():
    rng = np.random.default_rng(4)
    S, s_labels = unit(rng.standard_normal((30, 6))), rng.integers(0, 3, 30)
    Q, y_hat = unit(rng.standard_normal((40, 6))), rng.integers(0, 3, 40)
    init = unit(rng.standard_normal((3, 6))).astype(np.float64)
    for start in (None, init):
        mu = np.zeros((3, 6)) if start is None else start.copy()
        for x, c in _paired_visits(S, s_labels, Q, y_hat):
            mu[c] = 0.9 * mu[c] + 0.1 * x
        mu /= np.linalg.norm(mu, axis=1, keepdims=True)
        got, has = compute_prototypes(S, s_labels, Q, y_hat, 3, method="ema", momentum=0.9,
                                         init=start, chunk_size=7)
        np.testing.assert_allclose(got, mu, atol=1e-6)
        assert has.all()


def test_ema_prototypes_keep_the_source_gold_spans_weight():
    """Source spans of a class along one axis, as many target spans along another: interleaved,
    both sides weigh about equally (the old order, all source then all target, left the source
    a weight of momentum**1000, a cosine of 0.00004)."""
    S = np.tile(np.array([[1.0, 0.0]], np.float32), (1000, 1))
    Q = np.tile(np.array([[0.0, 1.0]], np.float32), (1000, 1))
    labels = np.ones(1000, np.int64)
    protos, _ = compute_prototypes(S, labels, Q, labels, 2, method="ema", momentum=0.99)
    assert protos[1, 0] == pytest.approx(protos[1, 1], abs=0.01)
    assert interleave_order(3, 2).tolist() == [0, 3, 1, 4, 2]


def test_mean_prototypes_and_missing_class():
    S = unit(np.array([[1.0, 0.0], [1.0, 0.2]]))
    Q = unit(np.array([[1.0, -0.2], [0.0, 1.0]]))
    protos, has = compute_prototypes(S, np.array([0, 0]), Q, np.array([0, 1]), 3, method="mean")
    np.testing.assert_allclose(protos[0], unit(S.sum(0) + Q[0]), atol=1e-6)
    assert has.tolist() == [True, True, False] and not protos[2].any()


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


# ---------------------------------------------------------------- multiple decision of the local view


def test_local_cap_lets_the_local_view_admit_two_classes_again():
    """Tight clusters (the model's own features): every class's threshold is most of k, any two
    sum past k, and no span is admitted to two classes. Bounding the thresholds at 0.4 k admits
    both classes for many spans placed between two clusters, and few clean spans get two."""
    X, labels = clusters(4000, weights=(0.7, 0.1, 0.1, 0.1), noise=0.3, seed=5)
    rng = np.random.default_rng(6)
    centre = lambda c: unit(X[labels == c].mean(0, keepdims=True))[0]  # noqa: E731
    between = unit(centre(PER) + centre(LOC) + 0.05 * rng.standard_normal((30, X.shape[1])))
    Q = np.concatenate([X[:3000], between])
    y = np.concatenate([labels[:3000], np.full(30, PER)])
    S, s_labels = X[3000:], labels[3000:]
    plain = step(Q, one_hot(y, 4), S, s_labels, m=0.5, k=100, o_keep_rate=0.5, use_global=False)
    assert np.sort(plain.tau_local)[:2].sum() > 100  # any two thresholds sum past k
    assert plain.L.sum(1).max() == 1
    capped = step(Q, one_hot(y, 4), S, s_labels, m=0.5, k=100, o_keep_rate=0.5, use_global=False,
                        local_cap=0.4)
    assert (capped.tau_local <= 40).all()
    two = capped.L[3000:]
    assert (two[:, PER] & two[:, LOC]).mean() > 0.3
    assert (capped.L[:3000].sum(1) >= 2).mean() < 0.05  # clean spans mostly keep one class
    assert capped.summary()["admitted"]["local_size_hist"]["2"] > 0
    with pytest.raises(ParamError) as err:
        step(Q, one_hot(y, 4), S, s_labels, m=0.5, k=10, local_cap=0.0)
    assert err.value.name == "denoise.local-cap"


# ---------------------------------------------------------------- soft measures


def test_soft_scores_equal_hard_scores_on_one_hot_labels():
    y = np.array([1, 2, 0, 1, 0, 3])
    gold = np.array([1, 1, 0, 0, -1, 3])
    soft = soft_scores(one_hot(y, 4), gold)
    hard = span_prf(y, gold)
    for key in ("precision", "recall", "f1"):
        assert soft[key] == pytest.approx(hard[key])
    assert soft["brier"] == pytest.approx(2 * 2 / 5)  # two wrong spans of five known, 2 each


def test_soft_scores_see_mass_the_hard_scores_do_not():
    gold = np.array([1, 0, 0, 0])
    Y = one_hot(np.array([1, 0, 0, 0]), 4)
    Y_soft = Y.copy()
    Y_soft[1] = [0.8, 0.2, 0.0, 0.0]  # an O span picks up 0.2 PER: same argmax
    Y_soft[0] = [0.1, 0.6, 0.3, 0.0]  # the entity keeps PER, less surely
    assert span_prf(Y_soft.argmax(1), gold) == span_prf(Y.argmax(1), gold)
    s = soft_scores(Y_soft, gold)
    assert s["entity_mass_on_gold_o"] == pytest.approx(0.2 / 3)
    assert s["entity_mass_on_gold_entity"] == pytest.approx(0.9)
    assert s["gold_class_mass_on_gold_entity"] == pytest.approx(0.6)
    assert s["precision"] == pytest.approx(0.6 / (0.9 + 0.2)) and s["recall"] == pytest.approx(0.6)
    assert s["brier_on_gold_entity"] == pytest.approx(0.01 + 0.16 + 0.09)
    assert s["brier"] > soft_scores(Y, gold)["brier"] == 0.0


def test_label_movement_counts_soft_mass_not_only_flips():
    Y = one_hot(np.array([O, O, PER]), 4)
    Y_new = np.array([[0.8, 0.2, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], np.float32)
    mv = label_movement(Y, Y_new, ["O", "PER", "LOC", "ORG"])
    assert mv["mass_moved"] == pytest.approx(1.2) and mv["spans_moved"] == 2
    assert mv["o_to_entity_mass"] == pytest.approx(0.2) and mv["entity_to_o_mass"] == 0.0
    assert mv["net_per_class"] == pytest.approx({"O": -0.2, "PER": -0.8, "LOC": 1.0, "ORG": 0.0})


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


# ---------------------------------------------------------------- views from features the labels did not train


def test_source_prototypes_ignore_the_target_labels():
    """Target LOC spans systematically labelled PER drag the PER prototype towards LOC; built
    from source gold alone it stays at PER, so the global view no longer admits PER for them."""
    X, labels = clusters(3000, weights=(0.4, 0.2, 0.2, 0.2), seed=11)
    Q, gold, S, s_labels = X[:2400], labels[:2400], X[2400:], labels[2400:]
    noisy = gold.copy()
    noisy[gold == LOC] = PER
    Y = one_hot(noisy, 4)
    both = step(Q, Y, S, s_labels, m=0.5, k=10, use_local=False)
    source = step(Q, Y, S, s_labels, m=0.5, k=10, use_local=False, prototype_from="source")
    want, _ = compute_prototypes(S, s_labels, Q[:0], noisy[:0], 4, method="mean")
    np.testing.assert_array_equal(source.prototypes, want)
    moved = gold == LOC
    assert both.G[moved, PER].mean() > 0.2
    assert source.G[moved, PER].mean() < 0.02 and source.G[moved, LOC].mean() > 0.9
    with pytest.raises(ParamError) as err:
        step(Q, Y, S, s_labels, m=0.5, k=10, prototype_from="target")
    assert err.value.name == "denoise.prototype-from"
