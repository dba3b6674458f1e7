"""glode/denoising/projection.py: span vectors to denoise.dim dimensions (svd, random, pca), chunked
and L2-normalised, against the whole-matrix formula; fewer spans than dimensions."""

from __future__ import annotations

import numpy as np
import pytest

from glode.denoising.projection import reduce_dim
from glode.denoising.views import compute_prototypes, global_view
from glode.errors import ParamError
from glode.settings import DenoiseSettings
from tests.synthetic import mostly_o_features


def _reduce_dim_whole(vectors, dim, seed, sample, centre):
    """The direct formula on one float64 matrix: the oracle for the chunked reduce_dim."""
    full = np.concatenate(vectors).astype(np.float64)
    rng = np.random.default_rng(seed)
    fit = full if len(full) <= sample else full[np.sort(rng.choice(len(full), sample, replace=False))]
    mean = fit.mean(axis=0) if centre else np.zeros(full.shape[1])
    basis = np.linalg.svd(fit - mean, full_matrices=False)[2][:dim]
    basis = basis * np.sign(basis[np.arange(dim), np.abs(basis).argmax(axis=1)])[:, None]
    out, lo = [], 0
    for v in vectors:
        x = (full[lo : lo + len(v)] - mean) @ basis.T
        out.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        lo += len(v)
    return out


@pytest.mark.parametrize("sample", [40, 1000])
@pytest.mark.parametrize("projection", ["svd", "pca"])
def test_reduce_dim_in_chunks_equals_the_whole_matrix_formula(sample, projection):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(70, 12)).astype(np.float32)
    b = (rng.normal(size=(45, 12)) * np.linspace(0.5, 3, 12)).astype(np.float32)
    got = reduce_dim([a, b], 5, seed=3, sample=sample, chunk=16, projection=projection)
    want = _reduce_dim_whole([a, b], 5, seed=3, sample=sample, centre=projection == "pca")
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, atol=1e-5)


@pytest.mark.parametrize("projection", ["svd", "random", "pca"])
def test_reduce_dim_normalises_and_is_deterministic(projection):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 20)), rng.normal(size=(30, 20))
    ra, rb = reduce_dim([a, b], 8, seed=0, projection=projection)
    assert ra.shape == (50, 8) and rb.shape == (30, 8)
    np.testing.assert_allclose(np.linalg.norm(ra, axis=1), 1, atol=1e-5)
    ra2, _ = reduce_dim([a, b], 8, seed=0, projection=projection)
    np.testing.assert_array_equal(ra, ra2)
    full, _ = reduce_dim([a, b], 0, seed=0, projection=projection)
    assert full.shape == (50, 20)


def test_unknown_projection_names_the_params_key():
    with pytest.raises(ParamError, match="denoise.projection"):
        DenoiseSettings(projection="umap")
    with pytest.raises(ValueError, match="umap"):
        reduce_dim([np.ones((3, 4))], 2, seed=0, projection="umap")


@pytest.mark.parametrize("projection", ["svd", "random", "pca"])
def test_projection_keeps_o_spans_nearest_to_the_o_prototype(projection):
    """Centring (the old PCA) makes the O mean an anti-entity direction: the O prototype is
    nearest for about a third of the O spans and its threshold collapses towards 0. The
    uncentred projections keep O nearest for > 99% of them, at a threshold like the others'."""
    X, y = mostly_o_features()
    (Q,) = reduce_dim([X], 16, seed=0, projection=projection)
    protos, has = compute_prototypes(Q[:0], y[:0], Q, y, 4, method="mean")
    g, tau, _ = global_view(Q, y, protos, has)
    o_nearest = (g[y == 0].argmax(1) == 0).mean()
    if projection == "pca":
        assert o_nearest < 0.5 and tau[0] < 0.2 * tau[1:].min()
    else:
        assert o_nearest > 0.99 and tau[0] > 0.9 * tau[1:].min()


@pytest.mark.parametrize("sizes", [(60, 40), (3, 0), (1,)])
def test_reduce_dim_with_fewer_spans_than_dim(sizes):
    """Fewer candidate spans than denoise.dim used to raise IndexError; the missing axes are zero
    columns, so cosines equal those of the spans' own principal axes."""
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=(n, 200)).astype(np.float32) for n in sizes]
    if sizes == (60, 40):
        vectors = [np.ones((60, 1018), "f4"), np.zeros((40, 1018), "f4")]  # the case
    out = reduce_dim(vectors, 128, 0)
    assert [o.shape for o in out] == [(n, 128) for n in sizes]
    assert all(np.isfinite(o).all() for o in out)
    if sizes == (3, 0):
        few = reduce_dim(vectors, 3, 0)[0]  # all the axes three points have (uncentred)
        np.testing.assert_allclose(out[0] @ out[0].T, few @ few.T, atol=1e-5)


def test_fitting_sentences_take_whole_sentences_in_seeded_order_until_the_sample_is_reached():
    from glode.denoising.projection import fitting_sentences

    target, source = np.full(50, 10), np.full(30, 20)  # 500 + 600 spans
    t_ids, s_ids = fitting_sentences([target, source], sample=200, seed=4)
    taken = target[t_ids].sum() + source[s_ids].sum()
    assert 200 <= taken < 200 + 20  # whole sentences, stopping at the first that reaches the sample
    assert len(t_ids) and len(s_ids)  # both corpora are drawn from
    assert (np.diff(t_ids) > 0).all() and (np.diff(s_ids) > 0).all()
    again = fitting_sentences([target, source], sample=200, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(again, (t_ids, s_ids)))
    other = fitting_sentences([target, source], sample=200, seed=5)
    assert not all(np.array_equal(a, b) for a, b in zip(other, (t_ids, s_ids)))
    everything = fitting_sentences([target, source], sample=10_000, seed=4)
    assert [len(x) for x in everything] == [50, 30]


@pytest.mark.parametrize("projection", ["svd", "pca", "random"])
def test_a_fitted_projection_applies_the_reduce_dim_formula(projection):
    from glode.denoising.projection import fit_projection

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 12)), rng.normal(size=(20, 12))
    whole = reduce_dim([a, b], 5, seed=3, projection=projection)  # (50 rows < sample: fitted on all)
    proj = fit_projection(np.concatenate([a, b]), 5, seed=3, projection=projection)
    assert proj.dim == 5
    np.testing.assert_allclose(proj.apply(a, chunk=7), whole[0], atol=1e-6)
    np.testing.assert_allclose(proj.apply(b), whole[1], atol=1e-6)
    full = fit_projection(a, 0, seed=3, projection=projection)  # dim 0: the full vectors, normalised
    assert full.dim == 12
    np.testing.assert_allclose(np.linalg.norm(full.apply(a), axis=1), 1, atol=1e-6)
