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
