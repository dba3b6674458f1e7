"""Global-local denoising (glode.denoise): the combination rule, both views, kNN details, repair of planted noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glode import denoise as dn
from glode.errors import ParamError

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


def small_problem(n: int = 400, m: int = 200, seed: int = 0):
    """Target vectors + one-hot labels and a source bank from the same clusters."""
    X, y = clusters(n + m, seed=seed)
    return X[:n], one_hot(y[:n], 4), X[n:], y[n:], y[:n]


# ---------------------------------------------------------------- combination rule


def test_combine_splits_mass_between_disagreeing_views():
    G = np.array([[False, True, True, False]])  # {PER, LOC}
    L = np.array([[False, True, False, False]])  # {PER}
    u = dn.combine(G, L, one_hot(np.array([O]), 4))
    np.testing.assert_allclose(u, [[0.0, 0.75, 0.25, 0.0]])


def test_combine_agreement_and_one_empty_view():
    Y = one_hot(np.array([O, O]), 4)
    G = np.array([[False, False, True, False], [False, False, False, False]])
    L = np.array([[False, False, True, False], [False, True, False, True]])
    u = dn.combine(G, L, Y)
    np.testing.assert_allclose(u, [[0, 0, 1, 0], [0, 0.5, 0, 0.5]])


def test_combine_both_empty_keeps_label():
    Y = np.array([[0.1, 0.6, 0.3, 0.0]], dtype=np.float32)
    empty = np.zeros((1, 4), dtype=bool)
    np.testing.assert_array_equal(dn.combine(empty, empty, Y), Y)
    np.testing.assert_allclose(dn.progressive_update(Y, Y, 0.5), Y, rtol=1e-6)


def test_progressive_update_is_normalised_ema():
    Y = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    u = np.array([[0.0, 0.75, 0.25, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(dn.progressive_update(Y, u, 0.8), [[0.8, 0.15, 0.05, 0.0]], rtol=1e-6)


# ---------------------------------------------------------------- global and local views


def test_global_view_admits_o_when_nearest_prototype_even_below_threshold():
    protos = np.eye(3, 4, dtype=np.float32)  # O, PER, LOC along the first three axes
    Q = unit(np.array([[0.9, 0.1, 0.0, 0.4],    # labelled O, close to O
                       [0.5, 0.4, 0.0, 0.7],    # labelled O, O nearest but below tau_O
                       [0.1, 0.95, 0.0, 0.1],   # PER, above the PER mean
                       [0.3, 0.8, 0.0, 0.3],    # PER, below it
                       [0.0, 0.2, 0.9, 0.1]]))  # LOC
    y_hat = np.array([O, O, PER, PER, LOC])
    g, tau, G = dn.global_view(Q, y_hat, protos, np.ones(3, bool))
    assert g[1, O] < tau[O]
    assert G[1].tolist() == [True, False, False]
    assert G[2].tolist() == [False, True, False]
    assert not G[3].any()  # neither above a threshold nor nearest to O
    np.testing.assert_allclose(tau[PER], g[2:4, PER].mean(), rtol=1e-6)
    assert not G[4].any()  # a lone LOC span equals its own mean: '>' is strict


def test_class_without_target_spans_has_infinite_thresholds():
    Q, Y, S, s_labels, _ = small_problem()
    keep = Y.argmax(1) != ORG
    r = dn.denoise(Q[keep], Y[keep], S, s_labels, m=0.5, k=20, o_keep_rate=1.0)
    assert np.isinf(r.tau_global[ORG]) and np.isinf(r.tau_local[ORG])
    assert not r.G[:, ORG].any() and not r.L[:, ORG].any()
    assert r.has_prototype[ORG]  # source spans still give it a prototype
    assert r.summary()["tau_global"]["3"] is None
    zero = dn.denoise(Q[keep], Y[keep], S, s_labels, m=0.5, k=20, o_keep_rate=1.0, local_scale=0.0)
    assert np.isinf(zero.tau_local[ORG]) and zero.tau_local[PER] == 0.0  # not 0 * inf = nan


def test_local_view_o_strict_plurality():
    n = np.array([[5, 4, 1, 0],   # O strictly most frequent, below tau_O -> admitted by plurality
                  [4, 4, 2, 0],   # tie -> not admitted
                  [20, 0, 0, 0],  # labelled O
                  [0, 10, 0, 0]], dtype=np.int32)
    y_hat = np.array([PER, PER, O, PER])
    tau, L = dn.local_view(n, y_hat, 0.9)
    assert tau[O] == pytest.approx(18.0)
    assert L[0, O] and not L[1, O]
    assert tau[PER] == pytest.approx(0.9 * (4 + 4 + 10) / 3)
    assert L[:, PER].tolist() == [False, False, False, True]


# ---------------------------------------------------------------- kNN


def test_self_excluded_from_neighbours():
    v = unit(np.array([[1.0, 0.0, 0.0]]))
    Q = np.concatenate([v, unit(np.array([[0.0, 1.0, 0.0]]))])
    Y = one_hot(np.array([PER, LOC]), 4)
    S = np.concatenate([v, unit(np.array([[0.0, 0.0, 1.0], [0.0, 0.1, 1.0]]))])  # identical copy of span 0
    s_labels = np.array([LOC, ORG, ORG])
    bank = dn.build_bank(S, s_labels, Q, Y.argmax(1), o_keep_rate=0.03, seed=0)
    assert bank.size == 5 and bank.target_pos.tolist() == [3, 4]
    index = dn.build_index(bank.vectors, "exact")
    n, missing = dn.neighbour_counts(Q, bank, index, 1, 4)
    assert n[0].tolist() == [0, 0, 1, 0]  # the identical source copy (LOC), never itself (PER)
    n, _ = dn.neighbour_counts(Q, bank, index, 4, 4)
    assert n[0].tolist() == [0, 0, 2, 2] and n[1].tolist() == [0, 1, 1, 2]
    assert missing == 0


def test_chunked_counts_equal_unchunked():
    Q, Y, S, s_labels, _ = small_problem(n=500)
    bank = dn.build_bank(S, s_labels, Q, Y.argmax(1), o_keep_rate=0.5, seed=3)
    index = dn.build_index(bank.vectors, "exact")
    whole, _ = dn.neighbour_counts(Q, bank, index, 25, 4, chunk_size=10_000)
    chunked, _ = dn.neighbour_counts(Q, bank, index, 25, 4, chunk_size=7)
    np.testing.assert_array_equal(whole, chunked)
    assert (whole.sum(1) == 25).all()


@pytest.mark.parametrize("k", [0, 10_000])
def test_k_out_of_range_is_param_error(k):
    Q, Y, S, s_labels, _ = small_problem()
    with pytest.raises(ParamError) as err:
        dn.denoise(Q, Y, S, s_labels, m=0.9, k=k)
    assert err.value.name == "k"
    msg = str(err.value)
    assert "memory bank" in msg and "o_keep_rate" in msg and f"k={k}" in msg


def test_bad_params_are_param_errors():
    Q, Y, S, s_labels, _ = small_problem()
    for kwargs, name in [({"m": 1.5}, "m"), ({"m": 0.9, "prototype": "median"}, "prototype"),
                         ({"m": 0.9, "index": "hnsw"}, "index"), ({"m": 0.9, "o_keep_rate": 2}, "o_keep_rate")]:
        with pytest.raises(ParamError) as err:
            dn.denoise(Q, Y, S, s_labels, k=10, **kwargs)
        assert err.value.name == name


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
    r = dn.denoise(Q, one_hot(noisy, 4), S, s_labels, m=0.0, use_global=use_global, use_local=use_local)
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
        a, b = dn.denoise(Q, Y, S, s_labels, **kw), dn.denoise(Q, Y, S, s_labels, **kw)
        for field in ("Y_new", "g", "G", "n", "L", "u", "prototypes"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.index_kind == index
        assert (a.n.sum(1) == 30).all() if index == "exact" else (a.n.sum(1) <= 30).all()
    other = dn.denoise(Q, Y, S, s_labels, m=0.7, k=30, o_keep_rate=0.2, seed=6)
    assert other.bank_size == a.bank_size  # same sample size, different rows
    assert not np.array_equal(other.n, a.n)


def test_auto_index_switches_on_bank_size():
    Q, Y, S, s_labels, _ = small_problem()
    small = dn.denoise(Q, Y, S, s_labels, m=0.9, k=10, index="auto", auto_threshold=10_000)
    large = dn.denoise(Q, Y, S, s_labels, m=0.9, k=10, index="auto", auto_threshold=10, nlist=4, nprobe=4)
    assert small.index_kind == "exact" and large.index_kind == "ivf"
    np.testing.assert_array_equal(small.n, large.n)  # probing every list is exact


def test_view_switches():
    Q, Y, S, s_labels, _ = small_problem()
    Y = 0.7 * Y + 0.3 / 4
    off = dn.denoise(Q, Y, S, s_labels, m=0.5, k=10**6, use_global=False, use_local=False)  # k unused
    np.testing.assert_allclose(off.Y_new, Y, rtol=1e-6)
    assert not off.G.any() and not off.L.any() and (off.n == 0).all()
    local = dn.denoise(Q, Y, S, s_labels, m=0.5, k=10, use_global=False)
    assert not local.G.any() and local.L.any()
    has = local.L.any(1)
    np.testing.assert_allclose(local.u[has], local.L[has] / local.L[has].sum(1, keepdims=True))
    glob = dn.denoise(Q, Y, S, s_labels, m=0.5, k=10, use_local=False)
    assert not glob.L.any() and glob.G.any()


def test_ema_prototypes_match_loop():
    rng = np.random.default_rng(4)
    S, s_labels = unit(rng.standard_normal((30, 6))), rng.integers(0, 3, 30)
    Q, y_hat = unit(rng.standard_normal((40, 6))), rng.integers(0, 3, 40)
    init = unit(rng.standard_normal((3, 6))).astype(np.float64)
    for start in (None, init):
        mu = np.zeros((3, 6)) if start is None else start.copy()
        for x, c in list(zip(S, s_labels)) + list(zip(Q, y_hat)):
            mu[c] = 0.9 * mu[c] + 0.1 * x
        mu /= np.linalg.norm(mu, axis=1, keepdims=True)
        got, has = dn.compute_prototypes(S, s_labels, Q, y_hat, 3, method="ema", momentum=0.9,
                                         init=start, chunk_size=7)
        np.testing.assert_allclose(got, mu, atol=1e-6)
        assert has.all()


def test_mean_prototypes_and_missing_class():
    S = unit(np.array([[1.0, 0.0], [1.0, 0.2]]))
    Q = unit(np.array([[1.0, -0.2], [0.0, 1.0]]))
    protos, has = dn.compute_prototypes(S, np.array([0, 0]), Q, np.array([0, 1]), 3)
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
    r = dn.denoise(Q, one_hot(noisy, 4), S, s_labels, m=0.0, k=20, o_keep_rate=1.0)
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
    out, refused = dn.agreement_gate(Y, Y_new, admitted)
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
    free = dn.denoise(Q, Y, S, s_labels, m=0.0)
    gated = dn.denoise(Q, Y, S, s_labels, m=0.0, gate="agree")
    changed = gated.y_new != gated.y_prev
    both = gated.G & gated.L
    assert changed.any() and gated.gated.any()
    assert both[np.arange(len(changed)), gated.y_new][changed].all()
    assert ((free.y_new != gated.y_new) == gated.gated).all()
    np.testing.assert_array_equal(gated.Y_new[gated.gated], Y[gated.gated])
    assert gated.summary()["changed"]["refused_by_gate"] == int(gated.gated.sum())
    # one view off: the gate follows the view in use
    local_only = dn.denoise(Q, Y, S, s_labels, m=0.0, use_global=False, gate="agree")
    moved = local_only.y_new != local_only.y_prev
    assert moved.any()
    assert local_only.L[np.arange(len(moved)), local_only.y_new][moved].all()
    # no view: nothing may change
    off = dn.denoise(Q, Y, S, s_labels, m=0.0, use_global=False, use_local=False, gate="agree")
    assert (off.y_new == off.y_prev).all()


def test_unknown_gate_is_param_error():
    Q, Y, S, s_labels, _ = small_problem()
    with pytest.raises(ParamError) as err:
        dn.denoise(Q, Y, S, s_labels, m=0.5, k=10, gate="both")
    assert err.value.name == "gate"
