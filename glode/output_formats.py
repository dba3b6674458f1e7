"""Sentences with entity spans, written for people and other tools: BIO (CoNLL) or JSON lines.

``glode labels export`` (a round's hard labels of the target corpus) and ``glode predict`` (a
model's entities in new text) both write through this module, so their outputs have one schema.

* ``bio``/``conll``: ``token tag`` per line (``token gold tag`` with ``--gold``), a blank line
  between sentences (``glode.conll.format_conll``).
* ``jsonl``: one JSON object per sentence, keys in this order::

    {"sentence_id": 0, "line": 1, "tokens": ["Anna", "lives", "in", "Berlin"],
     "tags": ["B-PER", "O", "O", "B-LOC"],
     "spans": [{"start": 0, "end": 1, "label": "PER", "prob": 0.95, "text": "Anna"}, ...],
     "gold": ["B-PER", "O", "O", "B-LOC"]}

  ``sentence_id``: 0-based position of the sentence in the input (for an export, the corpus'
  ``sentence_id``, as in ``glode labels show``); ``line``: 1-based line of its first word in the
  input file; ``tags``: BIO2 tags of ``spans``; ``spans``: non-overlapping entities, word
  offsets with ``end`` exclusive, ``prob`` the probability of the label (6 decimals), ``text``
  the words joined by spaces; ``gold``: the input's own tags, only with ``--gold`` (and, for
  ``predict``, a tagged CoNLL input).

Before issue 22 ``predict`` wrote ``score`` for ``prob``, no ``sentence_id``, and ``gold``
whenever its input had tags; ``labels export`` wrote no ``line``. Nothing in glode reads these
files back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from glode.conll import format_conll
from glode.spans import spans_to_tags

__all__ = ["TaggedSentence", "format_bio", "format_jsonl", "record"]


@dataclass
class TaggedSentence:
    """A sentence and its entity spans ``(start, end, label, prob)``, non-overlapping, by start."""

    tokens: list[str]
    line: int  # 1-based line of the first word in its input
    gold: list[str] | None = None  # the input's own tags, when it had them
    spans: list[tuple[int, int, str, float]] = field(default_factory=list)
    sentence_id: int = 0

    @property
    def tags(self) -> list[str]:
        return spans_to_tags([(s, e, lab) for s, e, lab, _ in self.spans], len(self.tokens))


def format_bio(sentences: Iterable[TaggedSentence], gold: bool = False) -> Iterator[str]:
    """CoNLL text, one chunk per sentence: ``token tag`` (``token gold tag`` with ``gold`` where known)."""
    return format_conll((s.tokens, s.gold, s.tags) if gold and s.gold is not None else (s.tokens, s.tags)
                        for s in sentences)


def record(sentence: TaggedSentence, gold: bool = False) -> dict:
    """The JSON object of one sentence (module docstring)."""
    s = sentence
    rec = {
        "sentence_id": s.sentence_id,
        "line": s.line,
        "tokens": s.tokens,
        "tags": s.tags,
        "spans": [{"start": a, "end": b, "label": lab, "prob": round(p, 6), "text": " ".join(s.tokens[a:b])}
                  for a, b, lab, p in s.spans],
    }
    if gold and s.gold is not None:
        rec["gold"] = s.gold
    return rec


def format_jsonl(sentences: Iterable[TaggedSentence], gold: bool = False) -> Iterator[str]:
    """One JSON line per sentence (module docstring)."""
    for s in sentences:
        yield json.dumps(record(s, gold), ensure_ascii=False) + "\n"
