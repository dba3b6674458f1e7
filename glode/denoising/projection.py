"""The span vectors the views compare (docs/METHOD.md §6): each span's feature projected to
``denoise.dim`` dimensions by ``denoise.projection`` and L2-normalised, so that a dot product is
a cosine. The ``pseudo_label@rN`` step projects target and source vectors together with one
basis (:func:`reduce_dim`) before writing them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from glode.progress import progress as progress_bar
from glode.settings import PROJECTION_SAMPLE, DenoiseSettings


def reduce_dim(vectors: Sequence[np.ndarray], dim: int, seed: int, sample: int = PROJECTION_SAMPLE,
               chunk: int = 16384, projection: str = "svd") -> list[np.ndarray]:
    """Project every array to ``dim`` dimensions, then L2-normalise rows. ``dim <= 0`` or
    ``>= d`` keeps the full feature.

    ``projection`` (docs/METHOD.md §6): ``"svd"`` projects onto the top ``dim`` right singular
    vectors of the *uncentred* union (fit on a seeded sample of ``sample`` rows), the best
    rank-``dim`` fit of the raw vectors; ``"random"`` is a fixed Gaussian projection drawn from
    ``seed`` (the reference's untrained projection head, without its bias); ``"pca"`` centres
    first, the old behaviour kept for comparison: with ~96% of spans O, centring turns the O
    mean into an anti-entity direction and the O prototype stops describing O spans. With fewer
    spans than ``dim`` the missing axes are zero columns, so the output is always ``dim`` wide.

    Works chunk by chunk: memory beyond the inputs is the fitting sample plus the float32
    outputs, never a float64 copy of the corpus (span features of a 3000-sentence CoNLL corpus
    are about 2 GB).
    """
    choices = DenoiseSettings.params()["projection"].choices
    if projection not in choices:  # (the settings refuse it first)
        raise ValueError(f"projection must be one of {', '.join(choices)}, got {projection!r}")
    sizes = [len(v) for v in vectors]
    total = int(sum(sizes))
    d = vectors[0].shape[1]
    mean, basis = _projection(vectors, sizes, dim, seed, sample, projection) if 0 < dim < d else (0.0, None)
    res = []
    bar = progress_bar(total=total, desc="projecting span vectors", unit="span")
    for v in vectors:
        out = np.empty((len(v), dim if basis is not None else d), dtype=np.float32)
        for lo in range(0, len(v), chunk):
            x = v[lo : lo + chunk].astype(np.float64)
            if basis is not None:
                x = (x - mean) @ basis.T
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            out[lo : lo + chunk] = x / np.maximum(norm, 1e-12)
            bar.update(len(x))
        res.append(out)
    bar.close()
    return res


def _projection(vectors: Sequence[np.ndarray], sizes: list[int], dim: int, seed: int, sample: int,
                projection: str) -> tuple[np.ndarray | float, np.ndarray]:
    """(mean, basis): ``x -> (x - mean) @ basis.T`` maps a vector to ``dim`` dimensions."""
    rng = np.random.default_rng(seed)
    if projection == "random":
        return 0.0, rng.standard_normal((dim, vectors[0].shape[1]))
    total = int(sum(sizes))
    rows = np.arange(total) if total <= sample else np.sort(rng.choice(total, sample, replace=False))
    offsets = np.cumsum([0] + sizes)
    which = np.searchsorted(offsets, rows, side="right") - 1
    fit = np.concatenate([vectors[a][rows[which == a] - offsets[a]] for a in range(len(vectors))]).astype(np.float64)
    mean = fit.mean(axis=0) if projection == "pca" else 0.0
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    del fit
    # fewer rows than dim give fewer axes: the rest are zero columns (no effect on cosines)
    basis = np.zeros((dim, vectors[0].shape[1]))
    basis[: min(dim, len(vt))] = vt[:dim]
    # fix each axis's sign so the projection does not depend on LAPACK's choice
    signs = np.sign(basis[np.arange(dim), np.abs(basis).argmax(axis=1)])
    return mean, basis * signs[:, None]
