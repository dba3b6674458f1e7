"""Tiny synthetic CoNLL corpora for fast tests (no real data needed)."""

from __future__ import annotations

import random
from pathlib import Path

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
