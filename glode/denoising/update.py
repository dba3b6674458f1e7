"""The label update of one denoising step, and the step's entry point :func:`denoise`, which
composes the views (glode/denoising/views.py) with it (docs/METHOD.md §3).

* combine: ``u = normalise((1[G]/|G| + 1[L]/|L|) / 2)`` (the old label where both are
  empty), then ``Y_new = normalise(m*Y + (1-m)*u)``;
* gate (optional, ``gate="agree"``): a span whose top class would change keeps its old label
  unless every view in use admits the new top class. Replaying denoising on cached rounds of
  the real corpora showed the ungated deletions and type swaps lower the pseudo-label F1
  (docs/RESULTS.md); the gate keeps the update wherever it only sharpens or softens a label;
* select (optional, ``select`` < 1): only the most confident share of each predicted entity
  class stays an entity, the rest is demoted towards ``O`` (:func:`select_confident`).

:func:`denoise` takes the arrays (:class:`DenoiseInput`), the round's
:class:`~glode.settings.DenoiseSettings` (whose defaults and checks are params.yaml's, declared
in glode/settings.py), the round's EMA weight and the kNN search's
:class:`~glode.settings.IndexOptions`. Class 0 is ``O``; ``ŷ = argmax Y``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from glode.denoising.views import compute_prototypes, global_view, local_counts, local_view
from glode.label_quality import summarize
from glode.settings import DenoiseSettings, IndexOptions


# --------------------------------------------------------------------------- inputs and results


@dataclass
class DenoiseInput:
    """The arrays one step works on: the target spans' vectors ``Q`` (N x d) and soft labels
    ``Y`` (N x C), the source spans' vectors ``S`` (M x d) and gold class ids ``s_labels`` (M,);
    vectors L2-normalised. Made contiguous float32 (int64 ids; the vectors may stay float16, as
    the pseudo_label step stores them, and ``Q`` may be a :class:`glode.pseudo_folder.VectorFile`
    on disk: the views read them in float32 a chunk at a time) and their
    shapes checked when made: what the settings' declarations cannot check."""

    Q: np.ndarray
    Y: np.ndarray
    S: np.ndarray
    s_labels: np.ndarray

    def __post_init__(self) -> None:
        half = lambda x: np.asarray(x).dtype == np.float16  # noqa: E731
        if isinstance(self.Q, np.ndarray) or not hasattr(self.Q, "shape"):  # (a VectorFile stays on disk)
            self.Q = np.ascontiguousarray(self.Q, dtype=np.float16 if half(self.Q) else np.float32)
        self.S = np.ascontiguousarray(self.S, dtype=np.float16 if half(self.S) else np.float32)
        self.Y = np.asarray(self.Y, dtype=np.float32)
        self.s_labels = np.asarray(self.s_labels).astype(np.int64, copy=False)
        Q, Y, S, s_labels = self.Q, self.Y, self.S, self.s_labels
        if Q.ndim != 2 or S.ndim != 2 or Q.shape[1] != S.shape[1]:
            raise ValueError(f"Q {Q.shape} and S {S.shape} must be 2-d with the same width")
        if Y.ndim != 2 or Y.shape[0] != Q.shape[0] or Y.shape[1] < 2:
            raise ValueError(f"Y {Y.shape} must be (N={Q.shape[0]}, C>=2)")
        if s_labels.shape != (S.shape[0],):
            raise ValueError(f"s_labels {s_labels.shape} must be ({S.shape[0]},)")
        C = Y.shape[1]
        if s_labels.size and (s_labels.min() < 0 or s_labels.max() >= C):
            raise ValueError(f"s_labels must be class ids in [0, {C})")
        if not np.isfinite(Y).all() or (Y < 0).any():
            raise ValueError("Y must be finite and non-negative")


@dataclass
class DenoiseResult:
    """Everything one refinement step computed; arrays are row-aligned with the target spans."""

    Y_new: np.ndarray  #: (N, C) float32, rows sum to 1: the refined soft labels
    Y_prev: np.ndarray  #: (N, C) float32, the labels the step started from
    y_prev: np.ndarray  #: (N,) int64, argmax of the input labels
    y_new: np.ndarray  #: (N,) int64, argmax of Y_new
    g: np.ndarray  #: (N, C) float32, cosine to each prototype
    G: np.ndarray  #: (N, C) bool, global admitted set
    n: np.ndarray  #: (N, C) int32, class counts among the k neighbours (self excluded)
    L: np.ndarray  #: (N, C) bool, local admitted set
    u: np.ndarray  #: (N, C) float32, combined view (= old label where both sets are empty)
    prototypes: np.ndarray  #: (C, d) float32, L2-normalised (zero row: no prototype)
    has_prototype: np.ndarray  #: (C,) bool
    tau_global: np.ndarray  #: (C,) float64, 0 for classes no target span carries
    tau_local: np.ndarray  #: (C,) float64, 0 likewise
    bank_size: int
    bank_class_counts: np.ndarray  #: (C,) int64, memory-bank entries per class
    index_kind: str  #: "exact" or "ivf": what was actually searched
    missing_neighbours: int  #: neighbour slots an approximate index could not fill
    gated: np.ndarray  #: (N,) bool, spans whose top-class change the gate refused (they kept Y)
    demoted_from: np.ndarray  #: (N,) int64, entity class a span was demoted from by ``select``, -1 if none
    settings: DenoiseSettings  #: what the step ran with
    m: float  #: the EMA weight of the old labels
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per phase

    def summary(
        self,
        prev_labels: np.ndarray | None = None,
        gold: np.ndarray | None = None,
        class_names: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """JSON-ready statistics of this step (plain Python numbers; +inf thresholds as None).

        ``prev_labels`` defaults to ``y_prev``; ``gold`` holds a gold class id per span
        (-1 = unknown, excluded from the scores).
        """
        return summarize(self, prev_labels=prev_labels, gold=gold, class_names=class_names)


# --------------------------------------------------------------------------- combine


#: rows whose float64 temporaries combine and progressive_update compute at a time: each works row
#: by row, so the result does not depend on it, and the temporaries stay at a few MB instead of
#: several N x C float64 arrays (at 192k CoNLL sentences, 12M spans, each of those is 480 MB)
ROWS_AT_A_TIME = 1 << 18


def _by_rows(rows_fn, *arrays: np.ndarray) -> np.ndarray:
    """``rows_fn(*(x[rows] for x in arrays))`` over :data:`ROWS_AT_A_TIME` rows at a time, into one
    float32 array (N x C, the arrays' common shape)."""
    out = np.empty(arrays[0].shape, dtype=np.float32)
    for a in range(0, out.shape[0], ROWS_AT_A_TIME):
        rows = slice(a, a + ROWS_AT_A_TIME)
        out[rows] = rows_fn(*(x[rows] for x in arrays))
    return out


def combine(G: np.ndarray, L: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """u = normalise((1[G]/|G| + 1[L]/|L|)/2); an empty set contributes zeros; both empty -> Y."""
    return _by_rows(_combine_rows, G, L, Y)


def _combine_rows(G: np.ndarray, L: np.ndarray, Y: np.ndarray) -> np.ndarray:
    g_size = G.sum(axis=1, keepdims=True)
    l_size = L.sum(axis=1, keepdims=True)
    u = G / np.maximum(g_size, 1) + L / np.maximum(l_size, 1)
    u *= 0.5
    total = u.sum(axis=1, keepdims=True)
    both_empty = (g_size == 0) & (l_size == 0)
    return np.where(both_empty, Y, u / np.where(total > 0, total, 1.0))


def agreement_gate(Y: np.ndarray, Y_new: np.ndarray, admitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Y_gated, refused): rows whose argmax changes to a class outside ``admitted`` keep ``Y``.

    ``admitted`` (N x C bool) holds the classes every view in use admits; a row whose top class
    stays the same keeps its update, so agreeing views still sharpen a label.
    """
    y_old = Y.argmax(axis=1)
    y_new = Y_new.argmax(axis=1)
    refused = (y_new != y_old) & ~admitted[np.arange(Y.shape[0]), y_new]
    out = Y_new.copy()
    out[refused] = Y[refused]
    return out, refused


def select_confident(
    Y_new: np.ndarray, conf: np.ndarray, share: float, rest_weight: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(Y_selected, demoted): keep the most confident ``share`` of each predicted entity class.

    Per entity class c, the spans whose top class is c are ranked by ``conf`` (ties by
    position); the first ``ceil(share * n_c)`` keep their label, the others are demoted to
    ``rest_weight * Y + (1 - rest_weight) * onehot(O)`` (0: plain O; between 0 and 1 their
    entity mass shrinks, and their top class may or may not stay). Working per class keeps every
    class's share of the entities as the labels had it, instead of letting one class crowd out
    another (docs/RESULTS.md: confidence ranks pseudo labels better than the views do).
    """
    N = Y_new.shape[0]
    y = Y_new.argmax(axis=1)
    demoted = np.zeros(N, dtype=bool)
    if share >= 1.0:
        return Y_new, demoted
    for c in range(1, Y_new.shape[1]):
        idx = np.flatnonzero(y == c)
        keep = int(np.ceil(share * idx.shape[0] - 1e-9))
        demoted[idx[np.argsort(-conf[idx], kind="stable")[keep:]]] = True
    out = Y_new.copy()
    out[demoted] *= rest_weight
    out[demoted, 0] += 1.0 - rest_weight
    return out, demoted


def progressive_update(Y: np.ndarray, u: np.ndarray, m: float) -> np.ndarray:
    """Y_new = normalise(m*Y + (1-m)*u): the EMA that moves labels a step towards the views
    (in float64, :data:`ROWS_AT_A_TIME` rows at a time)."""
    def ema_rows(y: np.ndarray, v: np.ndarray) -> np.ndarray:
        step = m * y.astype(np.float64) + (1.0 - m) * v.astype(np.float64)
        step /= step.sum(axis=1, keepdims=True)
        return step

    return _by_rows(ema_rows, Y, u)


# --------------------------------------------------------------------------- driver


def denoise(inputs: DenoiseInput, settings: DenoiseSettings, m: float, index_options: IndexOptions) -> DenoiseResult:
    """One global-local denoising step over the target spans (see the module docstrings here
    and in glode/denoising/views.py).

    ``inputs`` holds the arrays, ``settings`` the ``denoise`` section of params.yaml (and ``k``),
    checked when they were made; ``m`` is the round's EMA weight of the old labels (the stage
    derives it from ``m-start``, ``m-step``, ``m-min``, ``update-from`` and ``visits``).
    ``settings.index="auto"`` searches exactly while the memory bank has at most
    ``auto_threshold`` entries and with IVF above it (``index_options``: lists, k-means
    iterations, query chunks, faiss threads): on 1M-2M synthetic spans that kept >= 99.98% of
    denoised labels equal to exact search (docs/BENCHMARKS.md). ``gate="agree"`` refuses a change
    of a span's top class unless every view in use admits the new class (with both views off
    nothing can change). ``local_cap`` bounds each local threshold by ``local_cap * k``
    neighbours (1: no bound; below 0.5 a span whose neighbours split between two classes can be
    admitted to both). ``select`` < 1 then keeps only the most confident share of each
    predicted entity class, confidence being the starting label's probability of the refined
    class (:func:`select_confident`; ``select_rest`` is what the others keep).
    ``prototype_from="source"`` builds the prototypes from the source's gold spans alone, so the
    global view does not echo the target labels it checks.
    Raises ParamError for a ``k`` the memory bank cannot serve.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"the EMA weight m must lie in [0, 1], got {m}")
    Q, Y, S, s_labels = inputs.Q, inputs.Y, inputs.S, inputs.s_labels
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    y_hat = Y.argmax(axis=1).astype(np.int64)

    protos, has_proto = compute_prototypes(
        S, s_labels, *((Q, y_hat) if settings.prototype_from == "all" else (Q[:0], y_hat[:0])), Y.shape[1],
        method=settings.prototype, momentum=settings.momentum)
    g, tau_g, G = global_view(Q, y_hat, protos, has_proto)
    if not settings.use_global:
        G = np.zeros_like(G)
    timings["global"] = time.perf_counter() - t0

    bank, kind, n, missing = local_counts(S, s_labels, Q, y_hat, Y.shape[1], settings, index_options, timings)
    k = int(settings.k)
    tau_l, L = local_view(n, y_hat, settings.local_scale, cap=settings.local_cap * k if settings.local_cap < 1.0 else None)
    if not settings.use_local:
        L = np.zeros_like(L)

    t3 = time.perf_counter()
    u = combine(G, L, Y)
    views = [view for used, view in ((settings.use_global, G), (settings.use_local, L)) if used]
    Y_new, refused, demoted_from = _update(Y, u, m, settings.gate, views, settings.select, settings.select_rest)
    timings["combine"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    return DenoiseResult(
        Y_new=Y_new, Y_prev=Y, y_prev=y_hat, y_new=Y_new.argmax(axis=1).astype(np.int64), g=g, G=G, n=n, L=L,
        u=u, prototypes=protos, has_prototype=has_proto, tau_global=tau_g, tau_local=tau_l,
        bank_size=bank.size, bank_class_counts=np.bincount(bank.labels, minlength=Y.shape[1]),
        index_kind=kind, missing_neighbours=missing, gated=refused, demoted_from=demoted_from,
        settings=settings, m=m, timings=timings,
    )


def _update(Y: np.ndarray, u: np.ndarray, m: float, gate: str, views: list[np.ndarray], select: float,
            select_rest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y_new, refused, demoted_from): the progressive update towards ``u``, the agreement gate
    over the ``views`` in use, then ``select``."""
    Y_new = progressive_update(Y, u, m)
    if gate == "agree":
        admitted = np.logical_and.reduce(views) if views else np.zeros_like(Y, dtype=bool)
        Y_new, refused = agreement_gate(Y, Y_new, admitted)
    else:
        refused = np.zeros(Y.shape[0], dtype=bool)
    y_top = Y_new.argmax(axis=1)
    Y_new, demoted = select_confident(Y_new, Y[np.arange(Y.shape[0]), y_top], select, select_rest)
    return Y_new, refused, np.where(demoted, y_top, -1)
