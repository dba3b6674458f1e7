"""Tiny synthetic CoNLL corpora and span features for fast tests (no real data needed)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

PEOPLE = ["Anna", "Bernd", "Carla", "Dieter", "Eva Maria", "Jan de Vries"]
PLACES = ["Berlin", "Madrid", "New York", "Rotterdam", "Sankt Gallen"]
ORGS = ["Siemens", "Real Madrid", "United Nations", "Ajax"]
FILLER = ["lives", "in", "works", "for", "visited", "with", "and", "the", "today", "yesterday"]


def sentence(rng: random.Random) -> list[tuple[str, str]]:
    """A random sentence of filler words and 1-3 entities, as (token, BIO2 tag) pairs."""
    out: list[tuple[str, str]] = []
    for _ in range(rng.randint(1, 3)):
        out += [(w, "O") for w in rng.sample(FILLER, rng.randint(1, 3))]
        kind, names = rng.choice([("PER", PEOPLE), ("LOC", PLACES), ("ORG", ORGS)])
        words = rng.choice(names).split()
        out += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]
    out.append((".", "O"))
    return out


def write_corpus(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = ["\n".join(f"{t} {g}" for t, g in sentence(rng)) for _ in range(n)]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def all_words() -> list[str]:
    return sorted({w for n in PEOPLE + PLACES + ORGS for w in n.split()} | set(FILLER) | {"."})


def mostly_o_features(n: int = 20000, d: int = 64, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Span features shaped like a trained encoder's: a large component every span shares, a
    small offset per class (O's smallest), Gaussian noise; 96% O. Returns (features, class ids)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=d)
    common *= 4 / np.linalg.norm(common)
    offsets = rng.normal(size=(4, d))
    offsets *= 1.5 / np.linalg.norm(offsets, axis=1, keepdims=True)
    offsets[0] *= 0.3
    y = rng.choice(4, size=n, p=(0.96, 0.013, 0.013, 0.014))
    return common + offsets[y] + noise * rng.normal(size=(n, d)), y
