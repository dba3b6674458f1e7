"""Denoising inputs for the tests of glode/denoising/ and glode/label_quality.py: unit-vector
clusters, one-hot labels, and one step of denoise() at the settings' defaults."""

from __future__ import annotations

import numpy as np

from glode.denoising.update import DenoiseInput, DenoiseResult, denoise
from glode.settings import DenoiseSettings, IndexOptions


O, PER, LOC, ORG = 0, 1, 2, 3


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def clusters(n: int, n_classes: int = 4, d: int = 16, noise: float = 0.15, seed: int = 0,
             weights: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated unit-vector clusters, one per class: (vectors, class ids)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_classes, d)))
    labels = rng.choice(n_classes, size=n, p=weights)
    return unit(centres[labels] + noise * rng.standard_normal((n, d))), labels


def step(Q, Y, S, s_labels, m, *, nlist=None, **settings) -> DenoiseResult:
    """One denoising step at the settings' defaults (params.yaml's) but the plain step's
    ``gate="none"`` unless given; ``nlist`` fixes the IVF's lists."""
    settings.setdefault("gate", "none")
    return denoise(DenoiseInput(Q, Y, S, s_labels), DenoiseSettings(**settings), m, IndexOptions(nlist=nlist))


def small_problem(n: int = 400, m: int = 200, seed: int = 0):
    """Target vectors + one-hot labels and a source bank from the same clusters."""
    X, y = clusters(n + m, seed=seed)
    return X[:n], one_hot(y[:n], 4), X[n:], y[n:], y[:n]
