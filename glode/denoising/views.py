"""The two views of denoising (docs/METHOD.md §3): the global view against one prototype per
class, and the local view among the ``k`` nearest entries of a memory bank.

* global view: cosine of every target span to one prototype per class, admitted where it
  beats that class's threshold (the mean score over the spans currently labelled with it,
  with the reference's +1 in the denominator), plus ``O`` when ``O`` is the nearest prototype;
* local view: per-class counts among the ``k`` nearest memory-bank entries (source gold
  spans + target pseudo-labelled spans; all entities, an ``o_keep_rate`` sample of ``O``),
  the span itself excluded; admitted where the count beats ``local_scale`` x that class's
  mean count (+1 denominator likewise; optionally bounded by ``local_cap * k``), plus ``O``
  when ``O`` is the strict plurality among the neighbours.

Everything is vectorised; the kNN search runs in query chunks that are reduced to class
counts at once, so no N x k neighbour matrix is ever held (docs/METHOD.md §5). The span vectors
may be float16, as the pseudo_label step stores them; they are read in float32 a chunk at a time.

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
from dataclasses import dataclass

import faiss
import numpy as np

from glode.errors import ParamError
from glode.progress import progress as progress_bar
from glode.settings import DenoiseSettings, IndexOptions


#: rows of the span vectors converted to float32 at a time by the global view
_ROWS = 65536


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
    g = np.empty((Q.shape[0], C), dtype=np.float32)  # rows and prototypes are unit vectors
    for a in range(0, Q.shape[0], _ROWS):  # Q may be float16 (as stored): float32 a chunk at a time
        g[a : a + _ROWS] = Q[a : a + _ROWS].astype(np.float32, copy=False) @ prototypes.T
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
    window: int | None = None,
) -> tuple[np.ndarray, int]:
    """(n, missing): per-class counts among each span's k neighbours, reduced ``chunk_size``
    queries at a time (``IndexOptions.chunk_size``).

    With an IVF index, queries are read ``window`` rows at a time (``IndexOptions.search_window``)
    and searched in the order of their nearest IVF list, so that consecutive queries scan the
    same lists while they are in the CPU's cache (a quarter to a third less search time from a
    43k-entry bank to a 572k one, docs/SCALE.md). Each query's result does not depend on the
    others in its batch, so the counts are those of the corpus order."""
    N = Q.shape[0]
    n = np.empty((N, n_classes), dtype=np.int32)
    missing = 0
    ivf = faiss.try_extract_index_ivf(index)  # None for the exact (flat) index: nothing to order by
    ordered = ivf is not None and window is not None
    step = window if ordered else chunk_size
    bar = progress_bar(total=N, desc="kNN search", unit="span")  # minutes at a million spans
    for w in range(0, N, step):
        block = np.ascontiguousarray(Q[w:w + step], dtype=np.float32)
        order = np.argsort(ivf.quantizer.search(block, 1)[1][:, 0], kind="stable") if ordered else np.arange(len(block))
        for a in range(0, len(block), chunk_size):
            rows = order[a:a + chunk_size]
            ids, keep = search_neighbours(index, block[rows], bank.target_pos[w + rows], k)
            at = np.broadcast_to(np.arange(len(rows))[:, None], ids.shape)
            flat = at[keep] * n_classes + bank.labels[ids[keep]]
            n[w + rows] = np.bincount(flat, minlength=len(rows) * n_classes).reshape(len(rows), n_classes)
            missing += int(len(rows) * k - keep.sum())
            bar.update(len(rows))
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


# --------------------------------------------------------------------------- the local view's counts


def local_counts(S: np.ndarray, s_labels: np.ndarray, Q: np.ndarray, y_hat: np.ndarray, n_classes: int,
                 settings: DenoiseSettings, options: IndexOptions,
                 timings: dict[str, float]) -> tuple[MemoryBank, str, np.ndarray, int]:
    """(bank, index kind, n, missing): the memory bank and, with the local view in use, each
    span's class counts among its k neighbours there (zeros without it); ``timings`` gets the
    seconds of building the index and of the search."""
    k = int(settings.k)
    t1 = time.perf_counter()
    bank = build_bank(S, s_labels, Q, y_hat, o_keep_rate=settings.o_keep_rate, seed=settings.seed)
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
        n, missing = neighbour_counts(Q, bank, faiss_index, k, n_classes, chunk_size=options.chunk_size,
                                      window=options.search_window)
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
