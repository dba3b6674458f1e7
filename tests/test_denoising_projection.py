"""Round chain, EMA schedule, sparse label tables, target soft labels with hard-O override."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from glode.denoising.projection import reduce_dim
from glode.denoising.views import compute_prototypes, global_view
from glode.errors import ParamError
from glode.features import EncodedSentence
from glode.rounds import check_prev, rewrite_rounds, validate_rounds
from glode.label_quality import span_prf
from glode.label_table import initial_soft_labels, labels_frame, read_labels_dense, write_labels
from glode.settings import DenoiseSettings
from glode.steps.denoise import ema_weight
from glode.steps.train_target import target_soft_labels
from tests.synthetic import mostly_o_features

CLASSES = ["O", "PER", "LOC"]


def test_round_chain_validation():
    assert validate_rounds({"r1": {"prev": "r0"}, "r2": {"prev": "r1"}, "r3": {"prev": "r1"}}) == ["r1", "r2", "r3"]
    with pytest.raises(ParamError, match="defined later"):
        validate_rounds({"r1": {"prev": "r2"}, "r2": {"prev": "r0"}})
    with pytest.raises(ParamError, match="not a round"):
        validate_rounds({"r1": {"prev": "r7"}})
    with pytest.raises(ParamError, match="itself"):
        validate_rounds({"r1": {"prev": "r1"}})
    with pytest.raises(ParamError, match="needs a 'prev'"):
        validate_rounds({"r1": {}})
    check_prev("r2", "r1")
    check_prev("r2", "r0")
    for bad in ("r2", "r3", "x", "source"):
        with pytest.raises(ParamError, match=r"rounds\.r2\.prev"):
            check_prev("r2", bad)


def test_rewrite_rounds_keeps_the_rest_of_the_file(tmp_path):
    text = "# top comment\nk: 300\nrounds: &rounds\n  r1: {prev: r0}\n\nmodels:\n  r0: {prev: source}\n  <<: *rounds\n\ntrain:\n  epochs: 1  # keep me\n"
    path = tmp_path / "params.yaml"
    path.write_text(text)
    rewrite_rounds(path, 3)
    data = yaml.safe_load(path.read_text())
    assert data["rounds"] == {"r1": {"prev": "r0"}, "r2": {"prev": "r1"}, "r3": {"prev": "r2"}}
    assert set(data["models"]) == {"r0", "r1", "r2", "r3"}
    assert "# keep me" in path.read_text() and path.read_text().startswith("# top comment\nk: 300\n")
    rewrite_rounds(path, 0)
    assert yaml.safe_load(path.read_text())["rounds"] == {}
    rewrite_rounds(path, 1)
    assert path.read_text() == text


def test_ema_schedule_depends_only_on_the_round():
    assert ema_weight("r1", 0.8, 0.1, 0.5, update_from=1) == pytest.approx(0.8)
    assert ema_weight("r2", 0.8, 0.1, 0.5, update_from=1) == pytest.approx(0.7)
    assert ema_weight("r9", 0.8, 0.1, 0.5, update_from=1) == pytest.approx(0.5)
    # the reference's timing (5 epochs as rounds): no update in r1, r2; then 0.9125, 0.875, 0.8375
    ref = [ema_weight(f"r{i}", 0.9125, 0.0375, 0.8, update_from=3) for i in range(1, 6)]
    assert ref == pytest.approx([1.0, 1.0, 0.9125, 0.875, 0.8375])
    with pytest.raises(ParamError, match="denoise.m-start"):
        DenoiseSettings(m_start=1.5)


def _sentence(spans):
    s = np.array([a for a, _ in spans])
    e = np.array([b for _, b in spans])
    return EncodedSentence(np.zeros(3, np.int64), 4, 4, s, e, s, e, np.zeros((len(spans), 5), np.float32))


def test_target_soft_labels_turn_overlap_losers_into_hard_o():
    enc = _sentence([(0, 1), (0, 2), (1, 2), (3, 4)])
    Y = np.array([[0.3, 0.7, 0.0], [0.1, 0.0, 0.9], [0.2, 0.8, 0.0], [1.0, 0.0, 0.0]], np.float32)
    out = target_soft_labels(enc, Y)
    np.testing.assert_array_equal(out[1], Y[1])  # best entity keeps its distribution
    np.testing.assert_array_equal(out[0], [1, 0, 0])  # overlaps (0,2): hard O
    np.testing.assert_array_equal(out[2], [1, 0, 0])
    np.testing.assert_array_equal(out[3], Y[3])
    np.testing.assert_array_equal(Y[0], np.array([0.3, 0.7, 0.0], np.float32))  # input not modified


def test_harden_o_turns_faint_entity_mass_on_o_topped_labels_into_hard_o():
    """retrain.harden-o: an O-topped label with entity mass at most the threshold trains as one-hot O;
    more mass, or an entity top class, keeps its distribution; 0 changes nothing."""
    enc = _sentence([(0, 1), (1, 2), (2, 3), (3, 4)])
    Y = np.array([[0.9, 0.1, 0.0], [0.6, 0.2, 0.2], [0.7, 0.0, 0.3], [0.4, 0.6, 0.0]], np.float32)
    out = target_soft_labels(enc, Y, harden_o=0.3)
    np.testing.assert_array_equal(out[0], [1, 0, 0])  # 0.1 <= 0.3
    np.testing.assert_array_equal(out[1], Y[1])  # 0.4 > 0.3
    np.testing.assert_array_equal(out[2], [1, 0, 0])  # 0.3 <= 0.3
    np.testing.assert_array_equal(out[3], Y[3])  # an entity top class is never hardened
    np.testing.assert_array_equal(target_soft_labels(enc, Y), Y)


def test_label_table_round_trip_is_sparse_and_byte_stable(tmp_path):
    spans = pd.DataFrame({"sentence_id": [0, 0, 1, 1], "start": np.array([0, 1, 0, 2], np.int32),
                          "end": np.array([1, 2, 2, 3], np.int32), "text": ["a", "b", "c d", "e"],
                          "gold": ["PER", "O", "O", "O"]})
    Y_prev = np.array([[0.2, 0.8, 0], [1, 0, 0], [0.4, 0, 0.6], [1, 0, 0]], np.float32)
    Y_new = np.array([[0.1, 0.9, 0], [1, 0, 0], [0.7, 0, 0.3], [1, 0, 0]], np.float32)
    rows = np.array([0, 2])
    frame = labels_frame(spans, CLASSES, "r1", Y_prev, Y_new, rows)
    assert list(frame.label) == ["PER", "O"] and list(frame.changed) == [False, True]
    write_labels(frame, tmp_path / "a.parquet", CLASSES, "r1")
    write_labels(frame, tmp_path / "b.parquet", CLASSES, "r1")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    dense = read_labels_dense(tmp_path / "a.parquet", spans, CLASSES)
    np.testing.assert_allclose(dense[[0, 2]], Y_new[[0, 2]])
    np.testing.assert_array_equal(dense[[1, 3]], [[1, 0, 0], [1, 0, 0]])  # implicit one-hot O
    assert list(pd.read_parquet(tmp_path / "a.parquet").columns[:7]) == ["sentence_id", "start", "end", "text", "round", "label", "prob"]


def test_initial_soft_labels_keep_only_kept_entities():
    spans = pd.DataFrame({"O": [0.1, 0.2, 0.9], "PER": [0.9, 0.7, 0.1], "LOC": [0.0, 0.1, 0.0], "kept": [True, False, False]})
    Y = initial_soft_labels(spans, CLASSES)
    np.testing.assert_allclose(Y, [[0.1, 0.9, 0.0], [1, 0, 0], [1, 0, 0]])


def test_pseudo_label_prf_hand_case():
    y = np.array([1, 2, 0, 1, 0])
    gold = np.array([1, 1, 0, 0, -1])
    s = span_prf(y, gold)
    assert (s["correct"], s["predicted"], s["gold"]) == (1, 3, 2)
    assert s["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))


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
