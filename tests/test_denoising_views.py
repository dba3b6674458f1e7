"""glode/denoising/views.py: prototypes, the global view and its thresholds, the memory bank, the
kNN index and neighbour counts, the local view."""

from __future__ import annotations

import numpy as np
import pytest

from glode.denoising.views import (build_bank, build_index, compute_prototypes, global_view, interleave_order,
                                   local_view, neighbour_counts, search_neighbours)
from glode.errors import ParamError
from glode.settings import DenoiseSettings, IndexOptions
from tests.denoising_fixture import LOC, O, ORG, PER, clusters, one_hot, small_problem, step, unit


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


def test_ivf_counts_searched_in_list_order_are_those_of_the_corpus_order():
    """IVF queries are searched window by window in the order of their nearest list; each span
    still gets its own counts, those of searching it alone."""
    Q, Y, S, s_labels, _ = small_problem(n=500)
    bank = build_bank(S, s_labels, Q, Y.argmax(1), o_keep_rate=0.5, seed=3)
    index = build_index(bank.vectors, "ivf", nprobe=2, seed=0, options=IndexOptions(nlist=8))
    nearest = index.quantizer.search(np.ascontiguousarray(Q[:50], dtype=np.float32), 1)[1][:, 0]
    assert (np.diff(nearest) != 0).any()  # the first window's list order is not the corpus order
    ordered, missing = neighbour_counts(Q, bank, index, 25, 4, chunk_size=7, window=50)
    plain, missing_plain = neighbour_counts(Q, bank, index, 25, 4, chunk_size=10_000)
    np.testing.assert_array_equal(ordered, plain)
    assert missing == missing_plain
    for i in (0, 49, 50, 311, 499):  # one query at a time: nothing shared with a batch
        ids, keep = search_neighbours(index, np.ascontiguousarray(Q[i:i + 1], dtype=np.float32), bank.target_pos[i:i + 1], 25)
        np.testing.assert_array_equal(ordered[i], np.bincount(bank.labels[ids[keep]], minlength=4))


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


def test_float16_span_vectors_give_the_views_of_float32_within_float16_rounding():
    """The pseudo_label step stores span vectors in float16; the views read them in float32."""
    Q, Y, S, s_labels, _ = small_problem(n=600, m=200, seed=3)
    full = step(Q, Y, S, s_labels, 0.8, k=20, o_keep_rate=0.5, index="exact")
    half = step(Q.astype(np.float16), Y, S.astype(np.float16), s_labels, 0.8, k=20, o_keep_rate=0.5, index="exact")
    from glode.denoising.update import DenoiseInput

    assert DenoiseInput(Q.astype(np.float16), Y, S, s_labels).Q.dtype == np.float16  # no float32 copy of the corpus
    assert np.abs(half.g - full.g).max() < 2e-3
    assert (half.n != full.n).any(axis=1).mean() < 0.05  # a near-tie neighbour may swap
    assert (half.y_new == full.y_new).mean() > 0.99
    np.testing.assert_allclose(half.Y_new, full.Y_new, atol=0.25)
