"""Word-level spans: BIO <-> span conversion, candidate enumeration, greedy overlap resolution.

Spans are `Span(start, end, label)` with `end` exclusive (`tokens[start:end]`), the project-wide
convention. All functions are pure and deterministic so that pipeline stages are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from glode.errors import LabelError

__all__ = [
    "Span",
    "parse_tag",
    "to_bio2",
    "tags_to_spans",
    "spans_to_tags",
    "candidate_spans",
    "resolve_overlaps",
]


class Span(NamedTuple):
    """An entity over words `start..end-1` (end exclusive)."""

    start: int
    end: int
    label: str


def parse_tag(tag: str) -> tuple[str, str | None]:
    """Split a tag into (prefix, type): `O` -> ("O", None), `B-PER` -> ("B", "PER").

    Raises LabelError (a ValueError) for anything else, so malformed tags never silently become `O`.
    """
    if tag == "O":
        return "O", None
    if isinstance(tag, str) and len(tag) > 2 and tag[1] == "-" and tag[0] in "BI" and not any(c.isspace() for c in tag):
        return tag[0], tag[2:]
    raise LabelError(f"invalid tag {tag!r}: expected 'O', 'B-TYPE' or 'I-TYPE' (TYPE without spaces)")


def to_bio2(tags: Sequence[str]) -> list[str]:
    """Normalise IOB1 (or BIO2 with stray `I-`) to BIO2.

    An `I-X` at sentence start, after `O`, or after a tag of another type opens a new entity and
    becomes `B-X` (the reading of conlleval and seqeval). BIO2 input is returned unchanged.
    """
    out: list[str] = []
    prev_type: str | None = None
    for tag in tags:
        prefix, typ = parse_tag(tag)
        if prefix == "I" and typ != prev_type:
            out.append(f"B-{typ}")
        else:
            out.append(tag)
        prev_type = typ
    return out


def tags_to_spans(tags: Sequence[str]) -> list[Span]:
    """Entities of a tag sequence as spans, in order.

    The input is normalised with `to_bio2` first, so IOB1 and repaired BIO are accepted and read
    the way seqeval's strict IOB2 mode reads the normalised sequence.
    """
    spans: list[Span] = []
    start = -1
    label: str | None = None
    for i, tag in enumerate(to_bio2(tags)):
        prefix, typ = parse_tag(tag)
        if prefix == "I":
            continue  # to_bio2 guarantees it continues the open entity of the same type
        if label is not None:
            spans.append(Span(start, i, label))
            label = None
        if prefix == "B":
            start, label = i, typ
    if label is not None:
        spans.append(Span(start, len(tags), label))
    return spans


def spans_to_tags(spans: Iterable[Sequence], n_words: int) -> list[str]:
    """BIO2 tags of length `n_words` for non-overlapping spans.

    Raises LabelError (a ValueError) for a span outside `0..n_words`, an empty span, a label that is empty or
    `O`, or two spans that share a word (BIO cannot represent overlaps).
    """
    if n_words < 0:
        raise LabelError(f"n_words must be >= 0, got {n_words}")
    tags = ["O"] * n_words
    owner: list[tuple[int, int, str] | None] = [None] * n_words
    for sp in spans:
        try:
            start, end, label = int(sp[0]), int(sp[1]), sp[2]
        except (TypeError, ValueError, IndexError, KeyError):
            raise LabelError(f"span {sp!r} is not a (start, end, label) triple") from None
        if not (0 <= start < end <= n_words):
            raise LabelError(f"span ({start}, {end}, {label!r}) is outside a sentence of {n_words} words")
        if not isinstance(label, str) or not label or label == "O" or any(c.isspace() for c in label):
            raise LabelError(f"span ({start}, {end}, {label!r}) has an invalid entity label")
        for i in range(start, end):
            if owner[i] is not None:
                raise LabelError(f"span ({start}, {end}, {label!r}) overlaps span {owner[i]}")
            owner[i] = (start, end, label)
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def candidate_spans(n_words: int, max_span_len: int) -> list[tuple[int, int]]:
    """Every `(start, end)` of width 1..max_span_len, ordered by start, then width."""
    if max_span_len < 1:
        raise LabelError(f"max_span_len must be >= 1, got {max_span_len}")
    return [
        (start, start + width)
        for start in range(max(n_words, 0))
        for width in range(1, min(max_span_len, n_words - start) + 1)
    ]


def resolve_overlaps(spans_with_scores: Iterable[Sequence]) -> list[Span]:
    """Greedy non-overlapping selection: highest score first, kept only if it overlaps no kept span.

    Items are `(start, end, label, score)` for entity predictions (O already removed). Ties are
    broken by start, then end, then label, so the result does not depend on input order; a NaN
    score ranks below every number. Returns the kept spans sorted by start.
    """
    items = []
    for item in spans_with_scores:
        start, end, label, score = int(item[0]), int(item[1]), item[2], float(item[3])
        if start < 0 or start >= end:
            raise LabelError(f"negative, empty or reversed span ({start}, {end}, {label!r})")
        if math.isnan(score):
            score = -math.inf
        items.append((-score, start, end, str(label)))
    items.sort()
    kept: list[Span] = []
    occupied: set[int] = set()
    for _, start, end, label in items:
        if any(i in occupied for i in range(start, end)):
            continue
        occupied.update(range(start, end))
        kept.append(Span(start, end, label))
    kept.sort()
    return kept
