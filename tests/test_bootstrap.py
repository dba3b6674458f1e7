"""bench/bootstrap.py: the paired bootstrap of protocol v3, against independent oracles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from glode.metrics import prf
from tests.bench_modules import load

bs = load("bootstrap")


def _counts(rng, seeds: int, n: int, gold=None, skill: float = 0.6) -> np.ndarray:
    """Random per-sentence (tp, pred, gold) counts with a fixed gold column."""
    gold = rng.integers(0, 4, size=n) if gold is None else gold
    out = np.zeros((seeds, n, 3), dtype=int)
    for s in range(seeds):
        tp = rng.binomial(gold, skill)
        pred = tp + rng.integers(0, 2, size=n)
        out[s] = np.stack([tp, pred, gold], axis=1)
    return out


def _oracle(a, b, n_resamples, seed, level=0.95):
    """A slow loop: same draws, seqeval's 2PR/(P+R) per seed (glode.metrics.prf), mean over seeds."""
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    idx = rng.integers(0, n, size=(n_resamples, n))

    def mean_f1(c, rows):
        f = []
        for seed_counts in c:
            tp = pred = gold = 0
            for i in rows:
                tp += int(seed_counts[i][0])
                pred += int(seed_counts[i][1])
                gold += int(seed_counts[i][2])
            f.append(prf(tp, pred, gold)["f1"])
        return sum(f) / len(f)

    diffs = [mean_f1(a, rows) - mean_f1(b, rows) for rows in idx.tolist()]
    tail = 100 * (1 - level) / 2
    return diffs, np.percentile(diffs, [tail, 100 - tail])


def test_matches_a_pure_python_loop_on_the_same_draws():
    rng = np.random.default_rng(0)
    a = _counts(rng, 3, 23)
    b = _counts(rng, 2, 23, gold=a[0, :, 2], skill=0.4)
    n_resamples = 1203  # not a multiple of the chunk size
    diffs, (low, high) = _oracle(a, b, n_resamples, seed=7)
    got = bs.bootstrap_differences(a, b, n_resamples, seed=7)
    np.testing.assert_allclose(got, diffs, rtol=0, atol=1e-12)
    iv = bs.paired_interval(a, b, n_resamples, seed=7)
    assert iv.low == pytest.approx(low, abs=1e-12) and iv.high == pytest.approx(high, abs=1e-12)
    point = np.mean([prf(*c.sum(0))["f1"] for c in a]) - np.mean([prf(*c.sum(0))["f1"] for c in b])
    assert iv.diff == pytest.approx(point, abs=1e-12)
    assert iv.seeds == (3, 2) and iv.n_resamples == n_resamples


def test_agrees_with_scipy_percentile_bootstrap_on_one_seed():
    """scipy draws its own resamples, so only the distribution is compared."""
    rng = np.random.default_rng(1)
    a = _counts(rng, 1, 40)
    b = _counts(rng, 1, 40, gold=a[0, :, 2], skill=0.3)

    def stat(i):
        i = np.asarray(i, dtype=int)
        fa = prf(*a[0][i].sum(0))["f1"]
        fb = prf(*b[0][i].sum(0))["f1"]
        return fa - fb

    ref = stats.bootstrap((np.arange(40),), stat, vectorized=False, paired=True, n_resamples=4000,
                          method="percentile", random_state=np.random.default_rng(2))
    iv = bs.paired_interval(a, b, 4000, seed=3)
    assert iv.low == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert iv.high == pytest.approx(ref.confidence_interval.high, abs=0.03)


def test_identical_variants_give_exactly_zero():
    rng = np.random.default_rng(2)
    a = _counts(rng, 3, 50)
    iv = bs.paired_interval(a, a.copy(), 2000, seed=0)
    assert (iv.diff, iv.low, iv.high) == (0.0, 0.0, 0.0)
    avg = bs.average_interval([(a, a.copy()), (a[:, :20], a[:, :20].copy())], 500)
    assert (avg.diff, avg.low, avg.high) == (0.0, 0.0, 0.0)


def test_a_uniformly_better_variant_is_above_zero():
    rng = np.random.default_rng(3)
    b = _counts(rng, 3, 60, skill=0.3)
    a = b.copy()
    room = a[:, :, 0] < np.minimum(a[:, :, 1], a[:, :, 2])
    a[:, :, 0] += room  # one more true positive wherever there is room, never fewer
    assert room.any()
    iv = bs.paired_interval(a, b, 3000, seed=0)
    assert 0 < iv.low <= iv.diff <= iv.high
    assert bs.average_interval([(a, b), (a, b)], 1000).low > 0


def test_average_interval_averages_per_target_differences():
    rng = np.random.default_rng(4)
    t1 = _counts(rng, 3, 30), None
    t1 = (t1[0], _counts(rng, 3, 30, gold=t1[0][0, :, 2], skill=0.2))
    t2 = _counts(rng, 3, 17), None
    t2 = (t2[0], _counts(rng, 3, 17, gold=t2[0][0, :, 2], skill=0.9))
    avg = bs.average_interval([t1, t2], 800, seed=5)
    d1 = bs.bootstrap_differences(*t1, 800, seed=5)
    d2 = bs.bootstrap_differences(*t2, 800, seed=6)
    low, high = np.percentile((d1 + d2) / 2, [2.5, 97.5])
    assert (avg.low, avg.high) == (pytest.approx(low), pytest.approx(high))
    assert avg.diff == pytest.approx((bs.paired_interval(*t1, 10).diff + bs.paired_interval(*t2, 10).diff) / 2)


def test_deterministic_and_rejects_mismatched_test_sets():
    rng = np.random.default_rng(5)
    a = _counts(rng, 2, 25)
    b = _counts(rng, 2, 25, gold=a[0, :, 2])
    assert bs.paired_interval(a, b, 700, seed=9) == bs.paired_interval(a, b, 700, seed=9)
    with pytest.raises(ValueError, match="different test sets"):
        bs.paired_interval(a, b[:, :24], 10)
    other = b.copy()
    other[1, 0, 2] += 1
    other[1, 0, 1] += 1
    with pytest.raises(ValueError, match="gold counts differ"):
        bs.paired_interval(a, other, 10)
    bad = a.copy()
    bad[0, 0] = (3, 1, 3)
    with pytest.raises(ValueError, match="more true positives"):
        bs.mean_f1(bad)
