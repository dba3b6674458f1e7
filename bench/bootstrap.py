"""Paired bootstrap over test sentences for protocol v3 of bench/results.py (issue 19).

A variant's result on one target is a stack of per-sentence entity counts, one row per training
seed: ``counts[seed, sentence] = (true positives, predicted entities, gold entities)`` under
seqeval strict IOB2 (bench/sentence_counts.py writes them). Micro F1 of a seed is
``2 tp / (pred + gold)`` of the summed counts, which is seqeval's ``2PR / (P + R)``.

One bootstrap resample draws the test sentences of a target with replacement; the *same* draw
is applied to both variants and to every seed (paired, pooled over seeds): each seed's counts
are summed over the drawn sentences, its F1 computed, and the F1 averaged over the variant's
seeds. The statistic is ``mean-over-seeds F1(a) − mean-over-seeds F1(b)``; the interval is the
95% percentile interval of its resampled values. For the average over targets, each target
is resampled independently (its own draw, shared by both variants) and the per-target
differences are averaged per resample.

Vectorised: a chunk of resamples becomes a matrix of draw multiplicities (``np.bincount`` of
the drawn indices), multiplied by the count matrix. Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 10_000
CHUNK = 500  # resamples per matrix product (a CHUNK x sentences float matrix)


def f1_from_counts(tp, pred, gold):
    """Micro F1 from summed counts, elementwise; 0 where nothing is predicted or gold.

    Algebraically seqeval's ``2PR / (P + R)``; ``sentence_counts.check_against`` compares the
    two exactly for a cell's own metrics."""
    tp, pred, gold = (np.asarray(x, dtype=float) for x in (tp, pred, gold))
    denom = pred + gold
    return np.divide(2.0 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=denom > 0)


def _as_counts(counts) -> np.ndarray:
    c = np.asarray(counts, dtype=float)
    if c.ndim == 2:  # one seed
        c = c[None]
    if c.ndim != 3 or c.shape[2] != 3 or c.shape[0] < 1:
        raise ValueError(f"counts must be (seeds, sentences, 3) = (tp, pred, gold); got shape {c.shape}")
    if (c < 0).any() or (c[:, :, 0] > np.minimum(c[:, :, 1], c[:, :, 2])).any():
        raise ValueError("counts: negative, or more true positives than predicted or gold entities")
    return c


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the variants were scored on different test sets ({a.shape[1]} and {b.shape[1]} sentences)")
    gold = np.concatenate([a[:, :, 2], b[:, :, 2]])
    if (gold != gold[0]).any():
        raise ValueError("gold counts differ between seeds or variants: not the same test sentences")


def mean_f1(counts) -> float:
    """The variant's F1 on the whole test set, averaged over its seeds (the point estimate)."""
    c = _as_counts(counts)
    s = c.sum(axis=1)
    return float(f1_from_counts(s[:, 0], s[:, 1], s[:, 2]).mean())


def resampled_mean_f1(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Seed-averaged F1 for each resample; ``weights[r, i]``: how often resample r drew sentence i."""
    n_seeds, n_sentences, _ = counts.shape
    flat = counts.transpose(1, 0, 2).reshape(n_sentences, n_seeds * 3)
    sums = (weights @ flat).reshape(len(weights), n_seeds, 3)  # (resamples, seeds, 3)
    return f1_from_counts(sums[..., 0], sums[..., 1], sums[..., 2]).mean(axis=1)


def draw_weights(rng: np.random.Generator, n_sentences: int, n_resamples: int) -> np.ndarray:
    """Multiplicities of ``n_resamples`` draws of ``n_sentences`` sentences with replacement:
    row r counts how often each sentence was drawn by ``rng.integers(0, n, size=n)``."""
    idx = rng.integers(0, n_sentences, size=(n_resamples, n_sentences))
    flat = idx + n_sentences * np.arange(n_resamples)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * n_sentences).reshape(n_resamples, n_sentences).astype(float)


def bootstrap_differences(a, b, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Resampled values of mean F1(a) − mean F1(b) over one target's test sentences, paired."""
    a, b = _as_counts(a), _as_counts(b)
    _check_pair(a, b)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, CHUNK):
        w = draw_weights(rng, a.shape[1], min(CHUNK, n_resamples - start))
        out[start:start + len(w)] = resampled_mean_f1(a, w) - resampled_mean_f1(b, w)
    return out


@dataclass(frozen=True)
class Interval:
    """Difference of seed-averaged F1 (a − b) on the full test set(s), and its bootstrap interval."""

    diff: float
    low: float
    high: float
    n_resamples: int
    seeds: tuple[int, int]  # seeds of a and of b

    def as_dict(self) -> dict:
        return {"diff": self.diff, "low": self.low, "high": self.high, "n_resamples": self.n_resamples,
                "seeds": list(self.seeds)}


def interval_from(point: float, diffs: np.ndarray, seeds: tuple[int, int], level: float = 0.95) -> Interval:
    """The percentile interval of resampled differences around a point estimate."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(point, float(low), float(high), len(diffs), seeds)


def paired_interval(a, b, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95) -> Interval:
    """One target: the percentile interval of F1(a) − F1(b) (seed-averaged, paired resamples)."""
    a, b = _as_counts(a), _as_counts(b)
    diffs = bootstrap_differences(a, b, n_resamples, seed)
    return interval_from(mean_f1(a) - mean_f1(b), diffs, (a.shape[0], b.shape[0]), level)


def average_interval(pairs, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95) -> Interval:
    """The average over targets: ``pairs`` is a list of (a, b) count stacks, one per target.
    Target t is resampled with ``seed + t`` (independent draws per target, shared by a and b)
    and the per-target differences are averaged per resample."""
    if not pairs:
        raise ValueError("no targets")
    pairs = [(_as_counts(a), _as_counts(b)) for a, b in pairs]
    diffs = np.mean([bootstrap_differences(a, b, n_resamples, seed + t) for t, (a, b) in enumerate(pairs)], axis=0)
    point = float(np.mean([mean_f1(a) - mean_f1(b) for a, b in pairs]))
    seeds = (min(a.shape[0] for a, _ in pairs), min(b.shape[0] for _, b in pairs))
    return interval_from(point, diffs, seeds, level)
