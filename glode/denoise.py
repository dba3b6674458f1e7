"""Global (prototype) and local (kNN) denoising of span pseudo labels, and the progressive update.

One call of :func:`denoise` is one refinement step of docs/METHOD.md §3, run once per
self-training round on plain numpy arrays (the pipeline stage does the I/O). It takes the
arrays (:class:`DenoiseInput`), the round's :class:`~glode.settings.DenoiseSettings` (whose
defaults and checks are params.yaml's, declared in glode/settings.py), the round's EMA weight
and the kNN search's :class:`~glode.settings.IndexOptions`; the names below are the settings':

* global view: cosine of every target span to one prototype per class, admitted where it
  beats that class's threshold (the mean score over the spans currently labelled with it,
  with the reference's +1 in the denominator), plus ``O`` when ``O`` is the nearest prototype;
* local view: per-class counts among the ``k`` nearest memory-bank entries (source gold
  spans + target pseudo-labelled spans; all entities, an ``o_keep_rate`` sample of ``O``),
  the span itself excluded; admitted where the count beats ``local_scale`` x that class's
  mean count (+1 denominator likewise; optionally bounded by ``local_cap * k``), plus ``O``
  when ``O`` is the strict plurality among the neighbours;
* combine: ``u = normalise((1[G]/|G| + 1[L]/|L|) / 2)`` (the old label where both are
  empty), then ``Y_new = normalise(m*Y + (1-m)*u)``;
* gate (optional, ``gate="agree"``): a span whose top class would change keeps its old label
  unless every view in use admits the new top class. Replaying denoising on cached rounds of
  the real corpora showed the ungated deletions and type swaps lower the pseudo-label F1
  (docs/RESULTS.md); the gate keeps the update wherever it only sharpens or softens a label;
* select (optional, ``select`` < 1): only the most confident share of each predicted entity
  class stays an entity, the rest is demoted towards ``O`` (:func:`select_confident`).

Everything is vectorised; the kNN search runs in query chunks that are reduced to class
counts at once, so no N x k neighbour matrix is ever held (docs/METHOD.md §5).

Conventions and choices (documented here because the paper leaves them open):

* Class 0 is ``O``. ``ŷ = argmax Y`` (numpy's first-maximum tie rule).
* Thresholds are the reference's: the sum over the spans labelled c divided by their count
  + 1, so a class that no target span currently carries has thresholds 0 and is admitted
  wherever its score is positive (its prototype comes from source gold spans). A class with
  no member at all has no prototype: its ``g`` column is 0, it is never admitted by the
  global view nor chosen by the nearest-prototype rule, and ``has_prototype`` says so.
* ``O`` plurality is *strict*: ``n[s, O] > max_{c != O} n[s, c]``; a tie is not admitted.
* ``prototype="ema"`` is the reference's moving average ``mu <- momentum*mu +
  (1-momentum)*x`` taken over source and target spans interleaved in proportion (the
  reference pairs every source batch with a target batch, so the source's gold spans keep
  their weight; :func:`interleave_order`), from zeros (:func:`compute_prototypes` can also
  start from given prototypes), normalised once at the end, computed in closed form (the
  reference also renormalises after every batch, which slightly reweights old against new
  contributions; not reproduced). ``"mean"`` is the plain class mean (the default: it
  weights every span, whereas the EMA over a 0.99 momentum effectively sees only the last
  few hundred spans of each class). ``prototype_from="source"`` uses the source's gold
  spans alone.
* The ``O`` sample of the memory bank is exactly ``round(o_keep_rate * #O)`` spans of the
  source and of the target side, drawn without replacement by ``numpy.random.default_rng(seed)``.
* An approximate (IVF) index can return fewer than ``k`` neighbours for a span when the
  probed lists are small; such spans simply have fewer counts (``missing_neighbours``).
* Determinism: exact search and IVF (seeded k-means) give identical results for identical
  inputs and thread count; ``IndexOptions.threads`` pins faiss's OpenMP thread count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import faiss
import numpy as np

from glode.errors import ParamError
from glode.metrics import prf
from glode.progress import progress as progress_bar
from glode.settings import DenoiseSettings, IndexOptions


# --------------------------------------------------------------------------- inputs and results


@dataclass
class DenoiseInput:
    """The arrays one step works on: the target spans' vectors ``Q`` (N x d) and soft labels
    ``Y`` (N x C), the source spans' vectors ``S`` (M x d) and gold class ids ``s_labels`` (M,);
    vectors L2-normalised. Made contiguous float32 (int64 ids) and their shapes checked when
    made: what the settings' declarations cannot check."""

    Q: np.ndarray
    Y: np.ndarray
    S: np.ndarray
    s_labels: np.ndarray

    def __post_init__(self) -> None:
        self.Q = np.ascontiguousarray(self.Q, dtype=np.float32)
        self.S = np.ascontiguousarray(self.S, dtype=np.float32)
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


@dataclass
class MemoryBank:
    """The kNN memory bank: vectors, their labels, and where each target span sits in it."""

    vectors: np.ndarray  #: (B, d) float32
    labels: np.ndarray  #: (B,) int64
    target_pos: np.ndarray  #: (N,) int64, bank row of each target span, -1 if not in the bank
    source_rows: np.ndarray  #: source span ids in the bank, in bank order
    target_rows: np.ndarray  #: target span ids in the bank, in bank order

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


# --------------------------------------------------------------------------- global view


def _class_ranks(labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """0-based position of each element among the earlier elements of its class, and class sizes."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=n_classes)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    ranks = np.empty(labels.shape[0], dtype=np.int64)
    ranks[order] = np.arange(labels.shape[0]) - starts[labels[order]]
    return ranks, counts


def interleave_order(n_source: int, n_target: int) -> np.ndarray:
    """Visiting order of ``n_source`` source then ``n_target`` target rows (indices into their
    concatenation) with the two sides interleaved in proportion, as the reference's training
    steps pair each source batch with a target batch: source row i sits at (i+0.5)/n_source,
    target row j at (j+0.5)/n_target, ties source first. Both sides keep their own order."""
    key = np.concatenate([(np.arange(n_source) + 0.5) / max(n_source, 1),
                          (np.arange(n_target) + 0.5) / max(n_target, 1)])
    return np.argsort(key, kind="stable")


def _weighted_class_sums(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_classes: int, chunk_size: int
) -> np.ndarray:
    """sum_i w_i x_i per class in float64, as sorted segment sums chunk by chunk.

    Deliberately BLAS-free: a (C x chunk) @ (chunk x d) product is tiny work, but a
    multi-threaded BLAS stalls on it for up to a second when the cores are shared.
    """
    out = np.zeros((n_classes, X.shape[1]), dtype=np.float64)
    for a in range(0, X.shape[0], chunk_size):
        b = min(a + chunk_size, X.shape[0])
        lab = labels[a:b]
        order = np.argsort(lab, kind="stable")
        rows = X[a:b][order].astype(np.float64)
        rows *= weights[a:b][order, None]
        counts = np.bincount(lab, minlength=n_classes)
        present = counts > 0
        if present.any():
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[present]
            out[present] += np.add.reduceat(rows, starts, axis=0)
    return out


def compute_prototypes(
    S: np.ndarray,
    s_labels: np.ndarray,
    Q: np.ndarray,
    y_hat: np.ndarray,
    n_classes: int,
    *,
    method: str,
    momentum: float | None = None,
    init: np.ndarray | None = None,
    chunk_size: int = 16384,
) -> tuple[np.ndarray, np.ndarray]:
    """Class prototypes over source gold and target pseudo labels: (C x d float32 normalised, has_prototype).

    ``"ema"`` equals the ordered loop ``mu_c <- momentum*mu_c + (1-momentum)*x`` over the source
    and target spans interleaved by :func:`interleave_order`, started from ``init`` and
    normalised at the end: the span at rank r of the n_c members of class c in that order gets
    weight ``(1-momentum)*momentum**(n_c-1-r)``, ``init`` gets ``momentum**n_c``. ``method`` and
    ``momentum`` are ``denoise.prototype`` and ``denoise.momentum`` (``"mean"`` reads no momentum).
    """
    d = Q.shape[1]
    if method == "mean":
        w_s = np.ones(S.shape[0])
        w_q = np.ones(Q.shape[0])
        base = np.zeros((n_classes, d))
        members = np.bincount(s_labels, minlength=n_classes) + np.bincount(y_hat, minlength=n_classes)
    elif method == "ema" and momentum is not None:
        order = interleave_order(S.shape[0], Q.shape[0])
        labels = np.concatenate([s_labels, y_hat])
        merged_rank, members = _class_ranks(labels[order], n_classes)
        rank = np.empty_like(merged_rank)
        rank[order] = merged_rank
        w = (1.0 - momentum) * np.power(momentum, (members[labels] - 1 - rank).astype(np.float64))
        w_s, w_q = w[: S.shape[0]], w[S.shape[0] :]
        base = np.zeros((n_classes, d))
        if init is not None:
            base = np.power(momentum, members.astype(np.float64))[:, None] * np.asarray(init, np.float64)
    else:  # (the settings refuse an unknown method first)
        raise ValueError(f"prototype method {method!r} with momentum {momentum!r}: 'mean', or 'ema' with a momentum")
    total = base + _weighted_class_sums(S, s_labels, w_s, n_classes, chunk_size)
    total += _weighted_class_sums(Q, y_hat, w_q, n_classes, chunk_size)
    norms = np.linalg.norm(total, axis=1)
    has = norms > 0
    protos = np.zeros((n_classes, d), dtype=np.float32)
    protos[has] = (total[has] / norms[has, None]).astype(np.float32)
    if method == "mean":
        has &= members > 0
    return protos, has


def _class_means(scores: np.ndarray, y_hat: np.ndarray, n_classes: int) -> np.ndarray:
    """Per class c: sum of scores[s, c] over the spans labelled c, divided by their count + 1.

    The reference's threshold: its mean starts from one zero entry per class, so a class no
    span carries gets 0 (not +inf) and every class's mean is shrunk by count/(count+1).
    """
    own = scores[np.arange(scores.shape[0]), y_hat].astype(np.float64)
    sums = np.bincount(y_hat, weights=own, minlength=n_classes)
    counts = np.bincount(y_hat, minlength=n_classes)
    return sums / (counts + 1.0)


def global_view(
    Q: np.ndarray, y_hat: np.ndarray, prototypes: np.ndarray, has_prototype: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(g, tau_global, G): cosine scores, per-class mean thresholds, admitted sets (+O if nearest)."""
    C = prototypes.shape[0]
    g = Q @ prototypes.T  # float32, rows and prototypes are unit vectors
    tau = _class_means(g, y_hat, C)
    G = g > tau[None, :]
    G &= has_prototype[None, :]
    if has_prototype[0]:
        masked = np.where(has_prototype[None, :], g, -np.inf)
        G[:, 0] |= masked.argmax(axis=1) == 0
    return g, tau, G


# --------------------------------------------------------------------------- local view


def build_bank(
    S: np.ndarray,
    s_labels: np.ndarray,
    Q: np.ndarray,
    y_hat: np.ndarray,
    *,
    o_keep_rate: float,
    seed: int,
) -> MemoryBank:
    """Source (gold) then target (pseudo-labelled) spans: every entity plus a seeded O sample of each side."""
    rng = np.random.default_rng(seed)

    def keep(labels: np.ndarray) -> np.ndarray:
        o_rows = np.flatnonzero(labels == 0)
        n_keep = int(round(o_keep_rate * o_rows.shape[0]))
        sample = rng.choice(o_rows, size=n_keep, replace=False) if n_keep else o_rows[:0]
        mask = labels != 0
        mask[sample] = True
        return np.flatnonzero(mask)

    src = keep(s_labels)
    tgt = keep(y_hat)
    vectors = np.concatenate([S[src], Q[tgt]]).astype(np.float32, copy=False)
    labels = np.concatenate([s_labels[src], y_hat[tgt]]).astype(np.int64)
    target_pos = np.full(Q.shape[0], -1, dtype=np.int64)
    target_pos[tgt] = src.shape[0] + np.arange(tgt.shape[0])
    return MemoryBank(np.ascontiguousarray(vectors), labels, target_pos, src, tgt)


def build_index(
    vectors: np.ndarray,
    kind: str,
    *,
    nprobe: int,
    seed: int,
    options: IndexOptions,
) -> faiss.Index:
    """An inner-product faiss index over the bank: flat (exact) or IVF-flat with k-means seeded
    by ``seed``, ``nprobe`` lists probed per query (``denoise.seed``, ``denoise.nprobe``).

    ``options.nlist=None`` sizes the IVF by ``options.ivf_list_size`` bank entries per list, so
    that with a fixed ``nprobe`` each query scans a constant number of entries as the corpus grows.
    """
    d = vectors.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = options.nlist
        lists = nlist if nlist is not None else max(1, int(round(vectors.shape[0] / options.ivf_list_size)))
        lists = min(lists, vectors.shape[0])
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(seed)
        index.cp.niter = int(options.ivf_niter)
        index.train(vectors)
        index.nprobe = min(nprobe, lists)
    else:  # (the settings refuse an unknown kind first)
        raise ValueError(f"index kind must be exact or ivf, got {kind!r}")
    index.add(vectors)
    return index


def search_neighbours(
    index: faiss.Index, queries: np.ndarray, self_pos: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k bank ids per query with the query's own bank row excluded: (ids (n, k+1), keep mask).

    Searches k+1 and keeps, per row, the first k results that are neither the query itself
    nor missing (-1); exactly k are kept unless an approximate index returned too few.
    """
    _, ids = index.search(queries, k + 1)
    keep = (ids >= 0) & (ids != self_pos[:, None])
    keep &= np.cumsum(keep, axis=1) <= k
    return ids, keep


def neighbour_counts(
    Q: np.ndarray,
    bank: MemoryBank,
    index: faiss.Index,
    k: int,
    n_classes: int,
    *,
    chunk_size: int,
) -> tuple[np.ndarray, int]:
    """(n, missing): per-class counts among each span's k neighbours, reduced ``chunk_size``
    queries at a time (``IndexOptions.chunk_size``)."""
    N = Q.shape[0]
    n = np.empty((N, n_classes), dtype=np.int32)
    missing = 0
    bar = progress_bar(total=N, desc="kNN search", unit="span")  # minutes at a million spans
    for a in range(0, N, chunk_size):
        b = min(a + chunk_size, N)
        ids, keep = search_neighbours(index, Q[a:b], bank.target_pos[a:b], k)
        rows = np.broadcast_to(np.arange(b - a)[:, None], ids.shape)
        flat = rows[keep] * n_classes + bank.labels[ids[keep]]
        n[a:b] = np.bincount(flat, minlength=(b - a) * n_classes).reshape(b - a, n_classes)
        missing += int((b - a) * k - keep.sum())
        bar.update(b - a)
    bar.close()
    return n, missing


def local_view(
    n: np.ndarray, y_hat: np.ndarray, local_scale: float, cap: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(tau_local, L): scaled per-class mean-count thresholds and admitted sets (+O if strict plurality).

    ``cap`` (a neighbour count, e.g. ``local_cap * k``) bounds every threshold from above, so
    that a span whose neighbours split between two classes can be admitted to both.
    """
    C = n.shape[1]
    tau = local_scale * _class_means(n, y_hat, C)
    if cap is not None:
        tau = np.minimum(tau, cap)
    L = n > tau[None, :]
    L[:, 0] |= n[:, 0] > n[:, 1:].max(axis=1)
    return tau, L


# --------------------------------------------------------------------------- combine


def combine(G: np.ndarray, L: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """u = normalise((1[G]/|G| + 1[L]/|L|)/2); an empty set contributes zeros; both empty -> Y."""
    g_size = G.sum(axis=1, keepdims=True)
    l_size = L.sum(axis=1, keepdims=True)
    u = G / np.maximum(g_size, 1) + L / np.maximum(l_size, 1)
    u *= 0.5
    total = u.sum(axis=1, keepdims=True)
    both_empty = (g_size == 0) & (l_size == 0)
    u = np.where(both_empty, Y, u / np.where(total > 0, total, 1.0))
    return u.astype(np.float32)


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
    """Y_new = normalise(m*Y + (1-m)*u): the EMA that moves labels a step towards the views."""
    Y_new = m * Y.astype(np.float64) + (1.0 - m) * u.astype(np.float64)
    Y_new /= Y_new.sum(axis=1, keepdims=True)
    return Y_new.astype(np.float32)


# --------------------------------------------------------------------------- driver


def denoise(inputs: DenoiseInput, settings: DenoiseSettings, m: float, index_options: IndexOptions) -> DenoiseResult:
    """One global-local denoising step over the target spans (see the module docstring).

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

    bank, kind, n, missing = _local_counts(inputs, y_hat, settings, index_options, timings)
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


def _local_counts(inputs: DenoiseInput, y_hat: np.ndarray, settings: DenoiseSettings, options: IndexOptions,
                  timings: dict[str, float]) -> tuple[MemoryBank, str, np.ndarray, int]:
    """(bank, index kind, n, missing): the memory bank and, with the local view in use, each
    span's class counts among its k neighbours there (zeros without it)."""
    Q, n_classes, k = inputs.Q, inputs.Y.shape[1], int(settings.k)
    t1 = time.perf_counter()
    bank = build_bank(inputs.S, inputs.s_labels, Q, y_hat, o_keep_rate=settings.o_keep_rate, seed=settings.seed)
    kind = settings.index if settings.index != "auto" else ("exact" if bank.size <= settings.auto_threshold else "ivf")
    if not settings.use_local:
        return bank, kind, np.zeros((Q.shape[0], n_classes), dtype=np.int32), 0
    _check_k(k, bank, settings.o_keep_rate)
    previous_threads = faiss.omp_get_max_threads()
    if options.threads is not None:
        faiss.omp_set_num_threads(int(options.threads))
    try:
        faiss_index = build_index(bank.vectors, kind, nprobe=settings.nprobe, seed=settings.seed, options=options)
        timings["index"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        n, missing = neighbour_counts(Q, bank, faiss_index, k, n_classes, chunk_size=options.chunk_size)
        timings["search"] = time.perf_counter() - t2
        del faiss_index
    finally:
        if options.threads is not None:
            faiss.omp_set_num_threads(previous_threads)
    return bank, kind, n, missing


def _check_k(k: int, bank: MemoryBank, o_keep_rate: float) -> None:
    """The one check of ``k`` that needs the data: the bank must hold k neighbours besides the span."""
    if k > bank.size - 1:
        keys = DenoiseSettings.params()
        raise ParamError(
            keys["k"].key,
            f"k={k} neighbours needs a memory bank of at least k+1 entries (a span never counts "
            f"itself), but this bank has {bank.size} ({len(bank.source_rows)} source + "
            f"{len(bank.target_rows)} target spans: all entities plus {keys['o_keep_rate'].key}={o_keep_rate} "
            f"of O); use 1 <= k <= {max(bank.size - 1, 0)}, or raise {keys['o_keep_rate'].key}",
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


# --------------------------------------------------------------------------- summary


def span_prf(pred: np.ndarray, gold: np.ndarray) -> dict[str, float | int]:
    """Span-level micro P/R/F1 over entity classes: a predicted entity c is correct iff gold is c."""
    known = gold >= 0
    pred, gold = pred[known], gold[known]
    n_pred = int((pred != 0).sum())
    n_gold = int((gold != 0).sum())
    correct = int(((pred == gold) & (pred != 0)).sum())
    return {**prf(correct, n_pred, n_gold), "predicted": n_pred, "gold": n_gold, "correct": correct}


def soft_scores(Y: np.ndarray, gold: np.ndarray) -> dict[str, float | int]:
    """Label quality of soft labels ``Y`` (N x C) against gold class ids (-1 = unknown, excluded).

    ``precision``/``recall``/``f1`` are :func:`span_prf` with every count made soft: the
    predicted entities are the total entity mass ``sum_s (1 - Y[s, O])``, the correct ones the
    mass on the gold class of gold-entity spans; on one-hot labels they equal the hard scores.
    The means say where the mass sits: entity mass on gold-entity spans (soft recall of
    "is an entity") and on gold-O spans (soft false alarms), mass on the gold class of
    gold-entity spans, and the Brier score ``sum_c (Y[s, c] - 1[c = gold])**2`` averaged over
    all known spans and over gold-entity spans (0 is perfect, 2 the worst).
    """
    gold = np.asarray(gold, dtype=np.int64)
    known = gold >= 0
    Yk = np.asarray(Y, dtype=np.float64)[known]
    g = gold[known]
    entity = g != 0
    entity_mass = 1.0 - Yk[:, 0]
    gold_mass = Yk[np.arange(g.shape[0]), g]
    brier = (Yk * Yk).sum(axis=1) - 2.0 * gold_mass + 1.0
    correct = float(gold_mass[entity].sum())
    predicted = float(entity_mass.sum())
    n_gold = int(entity.sum())

    def mean(x: np.ndarray) -> float | None:
        return float(x.mean()) if x.size else None

    return {
        **prf(correct, max(predicted, 0.0), n_gold),  # (rounding can leave a hair below 0)
        "entity_mass": predicted,
        "correct_mass": correct,
        "gold": n_gold,
        "entity_mass_on_gold_entity": mean(entity_mass[entity]),
        "entity_mass_on_gold_o": mean(entity_mass[~entity]),
        "gold_class_mass_on_gold_entity": mean(gold_mass[entity]),
        "brier": mean(brier),
        "brier_on_gold_entity": mean(brier[entity]),
    }


def label_movement(Y_prev: np.ndarray, Y_new: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """How much soft mass an update moved, not only which top classes flipped.

    Per span the moved mass is half the L1 distance between the old and the new label (1 for
    a full flip, 0.2 for [1 O] becoming [0.8 O, 0.2 PER]); ``mass_moved`` sums it over the
    spans, ``spans_moved`` counts spans that moved more than 1e-6. ``o_to_entity_mass`` is the
    O mass that left spans (sum of the decreases of ``O``), ``entity_to_o_mass`` the O mass
    gained, ``net_per_class`` each class's total change (it sums to 0).
    """
    delta = np.asarray(Y_new, dtype=np.float64) - np.asarray(Y_prev, dtype=np.float64)
    moved = 0.5 * np.abs(delta).sum(axis=1)
    return {
        "mass_moved": float(moved.sum()),
        "spans_moved": int((moved > 1e-6).sum()),
        "max_moved": float(moved.max()) if moved.size else 0.0,
        "o_to_entity_mass": float(np.maximum(-delta[:, 0], 0.0).sum()),
        "entity_to_o_mass": float(np.maximum(delta[:, 0], 0.0).sum()),
        "net_per_class": {name: float(delta[:, c].sum()) for c, name in enumerate(class_names)},
    }


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def summarize(
    result: DenoiseResult,
    prev_labels: np.ndarray | None = None,
    gold: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Label movement (top-class flips and soft mass), admitted-set sizes, view agreement and
    (with gold) hard and soft P/R/F1 (:func:`soft_scores`) before and after.

    View agreement, over spans where both views admitted something: ``equal`` = the two
    sets are identical, ``intersect`` = they share a class; ``top_agree`` (all spans) =
    argmax g equals argmax n.
    """
    C = result.Y_new.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(C)]
    if len(names) != C:
        raise ValueError(f"class_names has {len(names)} names for {C} classes")
    before = result.y_prev if prev_labels is None else np.asarray(prev_labels, dtype=np.int64)
    after = result.y_new
    changed = before != after
    g_size = result.G.sum(axis=1)
    l_size = result.L.sum(axis=1)
    both = (g_size > 0) & (l_size > 0)
    n_both = int(both.sum())
    equal = int((result.G == result.L).all(axis=1)[both].sum())
    intersect = int((result.G & result.L).any(axis=1)[both].sum())

    def hist(sizes: np.ndarray) -> dict[str, int]:
        return {str(i): int(v) for i, v in enumerate(np.bincount(sizes, minlength=C + 1))}

    out: dict[str, Any] = {
        "spans": int(after.shape[0]),
        "classes": names,
        "bank_size": int(result.bank_size),
        "bank_per_class": dict(zip(names, map(int, result.bank_class_counts))),
        "index": result.index_kind,
        "missing_neighbours": int(result.missing_neighbours),
        "per_class_before": dict(zip(names, map(int, np.bincount(before, minlength=C)))),
        "per_class_after": dict(zip(names, map(int, np.bincount(after, minlength=C)))),
        "changed": {
            "total": int(changed.sum()),
            "o_to_entity": int((changed & (before == 0)).sum()),
            "entity_to_o": int((changed & (after == 0)).sum()),
            "type_swap": int((changed & (before != 0) & (after != 0)).sum()),
            "refused_by_gate": int(result.gated.sum()),
        },
        "soft_change": label_movement(result.Y_prev, result.Y_new, names),
        "select": {
            "share": result.settings.select,
            "rest_weight": result.settings.select_rest,
            "demoted": int((result.demoted_from >= 0).sum()),
            "demoted_per_class": dict(zip(names, map(int, np.bincount(
                result.demoted_from[result.demoted_from >= 0], minlength=C)))),
        },
        "admitted": {
            "global_size_hist": hist(g_size),
            "local_size_hist": hist(l_size),
            "global_mean_size": float(g_size.mean()) if g_size.size else 0.0,
            "local_mean_size": float(l_size.mean()) if l_size.size else 0.0,
            "both_empty": int(((g_size == 0) & (l_size == 0)).sum()),
        },
        "view_agreement": {
            "both_nonempty": n_both,
            "equal_rate": equal / n_both if n_both else None,
            "intersect_rate": intersect / n_both if n_both else None,
            "top_agree_rate": float((result.g.argmax(1) == result.n.argmax(1)).mean()) if after.size else None,
        },
        "tau_global": dict(zip(names, _finite_or_none(result.tau_global))),
        "tau_local": dict(zip(names, _finite_or_none(result.tau_local))),
    }
    if gold is not None:
        gold = np.asarray(gold, dtype=np.int64)
        if gold.shape != after.shape:
            raise ValueError(f"gold {gold.shape} must be ({after.shape[0]},)")
        out["gold"] = {"known": int((gold >= 0).sum()), "before": span_prf(before, gold), "after": span_prf(after, gold),
                       "soft_before": soft_scores(result.Y_prev, gold), "soft_after": soft_scores(result.Y_new, gold)}
    return out
