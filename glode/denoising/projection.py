"""The span vectors the views compare (docs/METHOD.md §6): each span's feature projected to
``denoise.dim`` dimensions by ``denoise.projection`` and L2-normalised, so that a dot product is
a cosine. The ``pseudo_label@rN`` step projects target and source vectors together with one
basis (:func:`fit_projection`, fitted on the span vectors of a seeded sample of sentences:
:func:`fitting_sentences`) while it streams them to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from glode.progress import progress as progress_bar
from glode.settings import PROJECTION_SAMPLE, DenoiseSettings


@dataclass
class Projection:
    """``x -> normalise((x - mean) @ basis.T)``, applied chunk by chunk; without a basis rows are
    only normalised (``denoise.dim`` 0 or at least the vectors' width: the full vectors)."""

    width: int  #: the input vectors' width
    mean: np.ndarray | float = 0.0
    basis: np.ndarray | None = None  #: (dim, width) float64

    @property
    def dim(self) -> int:
        return self.width if self.basis is None else int(self.basis.shape[0])

    def apply(self, x: np.ndarray, chunk: int = 16384) -> np.ndarray:
        """The projected, L2-normalised rows of ``x`` as float32 (computed in float64 a chunk at a time)."""
        out = np.empty((len(x), self.dim), dtype=np.float32)
        for lo in range(0, len(x), chunk):
            v = x[lo : lo + chunk].astype(np.float64)
            if self.basis is not None:
                v = (v - self.mean) @ self.basis.T
            out[lo : lo + chunk] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return out


def fit_projection(fit: np.ndarray, dim: int, seed: int, projection: str = "svd") -> Projection:
    """The projection to ``dim`` dimensions fitted on the rows of ``fit`` (``"svd"``, ``"pca"``) or
    drawn from ``seed`` (``"random"``, which reads only ``fit``'s width); see :func:`reduce_dim`."""
    choices = DenoiseSettings.params()["projection"].choices
    if projection not in choices:  # (the settings refuse it first)
        raise ValueError(f"projection must be one of {', '.join(choices)}, got {projection!r}")
    width = fit.shape[1]
    if not 0 < dim < width:
        return Projection(width)
    if projection == "random":
        return Projection(width, 0.0, np.random.default_rng(seed).standard_normal((dim, width)))
    fit = fit.astype(np.float64)
    mean = fit.mean(axis=0) if projection == "pca" else 0.0
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    del fit
    # fewer rows than dim give fewer axes: the rest are zero columns (no effect on cosines)
    basis = np.zeros((dim, width))
    basis[: min(dim, len(vt))] = vt[:dim]
    # fix each axis's sign so the projection does not depend on LAPACK's choice
    signs = np.sign(basis[np.arange(dim), np.abs(basis).argmax(axis=1)])
    return Projection(width, mean, basis * signs[:, None])


def fitting_sentences(span_counts: Sequence[np.ndarray], sample: int, seed: int) -> list[np.ndarray]:
    """Which sentences of each corpus the projection is fitted on, when the corpora are too large
    to hold their span vectors (the ``pseudo_label@rN`` step streams them): whole sentences of
    the corpora together, in a seeded random order, until they hold at least ``sample`` spans
    (about 300 CoNLL sentences for the default 20,000: a few percent more scoring on a
    3,000-sentence corpus, and no memory that grows with the corpus). ``span_counts[a][i]`` is
    the number of candidate spans of sentence i of corpus a; returns sorted sentence indices per corpus."""
    sizes = [len(c) for c in span_counts]
    counts = np.concatenate([np.asarray(c, dtype=np.int64) for c in span_counts]) if sizes else np.zeros(0, np.int64)
    order = np.random.default_rng(seed).permutation(len(counts))
    taken = order[: int(np.searchsorted(np.cumsum(counts[order]), sample)) + 1]
    offsets = np.cumsum([0, *sizes])
    return [np.sort(taken[(taken >= offsets[a]) & (taken < offsets[a + 1])] - offsets[a]) for a in range(len(sizes))]


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

    For vectors held in memory (the pipeline streams them: :func:`fitting_sentences`, then
    :func:`fit_projection` and :meth:`Projection.apply`); memory beyond the inputs is the
    fitting sample plus the float32 outputs.
    """
    sizes = [len(v) for v in vectors]
    total = int(sum(sizes))
    rng = np.random.default_rng(seed)
    if projection in ("svd", "pca"):
        rows = np.arange(total) if total <= sample else np.sort(rng.choice(total, sample, replace=False))
        offsets = np.cumsum([0] + sizes)
        which = np.searchsorted(offsets, rows, side="right") - 1
        fit = np.concatenate([vectors[a][rows[which == a] - offsets[a]] for a in range(len(vectors))])
    else:
        fit = vectors[0][:0]
    proj = fit_projection(fit, dim, seed, projection)
    bar = progress_bar(total=total, desc="projecting span vectors", unit="span")
    res = []
    for v in vectors:
        res.append(proj.apply(v, chunk))
        bar.update(len(v))
    bar.close()
    return res
