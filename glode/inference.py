"""Use a trained model folder on new text: read sentences, predict entity spans, write BIO or JSON.

``glode predict`` (glode/cli.py) is a thin wrapper; the model is loaded exactly as the
evaluate stage loads it (``glode.model.load_model``), and spans are scored and decoded by
``glode.predict`` (greedy non-overlapping decoding, as in evaluation).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glode.errors import GlodeError, InputError
from glode.progress import progress as progress_bar
from glode.spans import parse_tag, spans_to_tags

TOKENIZERS = ("whitespace", "simple")
#: Words, numbers (with inner . , ' - joined), and every other non-space character on its own.
_SIMPLE = re.compile(r"\w+(?:[.,'’\-]\w+)*|[^\w\s]", re.UNICODE)


@dataclass
class Item:
    """One input sentence, and after prediction its entity spans ``(start, end, label, score)``."""

    tokens: list[str]
    line: int  # 1-based line of the sentence in its input
    gold: list[str] | None = None
    spans: list[tuple[int, int, str, float]] = field(default_factory=list)


def tokenize(text: str, how: str = "whitespace") -> list[str]:
    """Split a line into words: on whitespace, or ``simple``: punctuation split off words."""
    if how == "whitespace":
        return text.split()
    if how == "simple":
        return _SIMPLE.findall(text)
    raise GlodeError(f"unknown tokenizer {how!r}; use one of {', '.join(TOKENIZERS)}")


def read_text(lines: Iterable[str], how: str = "whitespace") -> list[Item]:
    """One sentence per non-blank line."""
    items = []
    for n, line in enumerate(lines, start=1):
        tokens = tokenize(line.rstrip("\r\n"), how)
        if tokens:
            items.append(Item(tokens, n))
    return items


def read_conll_lines(lines: Iterable[str], name: str = "<input>") -> list[Item]:
    """CoNLL: one token per line (first column), blank line between sentences, ``-DOCSTART-``
    skipped. When a line has two or more columns and the last is a tag, it is kept as gold."""
    items: list[Item] = []
    tokens: list[str] = []
    tags: list[str | None] = []
    first = 0

    def flush():
        if tokens:
            gold = list(tags) if all(t is not None for t in tags) else None
            items.append(Item(list(tokens), first, gold))
        tokens.clear()
        tags.clear()

    for n, raw in enumerate(lines, start=1):
        cols = raw.strip().split()
        if not cols or cols[0] == "-DOCSTART-":
            flush()
            continue
        if not tokens:
            first = n
        tag = None
        if len(cols) >= 2:
            try:
                parse_tag(cols[-1])
                tag = cols[-1]
            except ValueError:
                pass
        tokens.append(cols[0])
        tags.append(tag)
    flush()
    if not items:
        raise InputError(name, None, "no sentences found; expected one token per line (optionally 'token ... tag'), "
                         "a blank line between sentences")
    return items


def looks_like_conll(lines: Sequence[str]) -> bool:
    """Guess the input format from its first 200 lines: CoNLL when one is ``-DOCSTART-`` or every
    non-blank one is ``token ... tag`` (two or more columns, the last a BIO tag). Token-only
    CoNLL files need ``--input-format conll``."""
    body = [ln.split() for ln in lines[:200] if ln.strip()]
    if any(cols[0] == "-DOCSTART-" for cols in body):
        return True
    if not body:
        return False
    for cols in body:
        if len(cols) < 2:
            return False
        try:
            parse_tag(cols[-1])
        except ValueError:
            return False
    return True


def read_input(path: str, fmt: str = "auto", how: str = "whitespace") -> tuple[list[Item], str]:
    """Sentences from a file (``-``: stdin) as text or CoNLL; returns them and the format used."""
    if path == "-":
        text = sys.stdin.read()
        name = "<stdin>"
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(p, None, "file not found; give a text file with one sentence per line, or a CoNLL file")
        try:
            text = p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(p, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start}); re-encode it as UTF-8") from None
        name = str(p)
    lines = text.split("\n")
    if fmt == "auto":
        fmt = "conll" if looks_like_conll(lines) else "text"
    if fmt == "conll":
        return read_conll_lines(lines, name), fmt
    if fmt == "text":
        items = read_text(lines, how)
        if not items:
            raise InputError(name, None, "no sentences found (only blank lines)")
        return items, fmt
    raise GlodeError(f"unknown input format {fmt!r}; use auto, text or conll")


def load_predictor(model_dir: str | Path, encoder_dir: str | Path | None = None):
    """Model, tokenizer and sentence encoder of a model folder, loaded as the evaluate stage does."""
    from glode.features import SentenceEncoder
    from glode.model import load_model

    model, tokenizer, meta = load_model(model_dir, encoder_dir)
    encoder = SentenceEncoder(tokenizer, model.config.max_span_len, model.config.max_seq_len)
    return model, tokenizer, encoder


def predict_items(
    model,
    tokenizer,
    encoder,
    items: Sequence[Item],
    batch_size: int = 64,
    chunk: int = 2048,
    progress: bool = True,
) -> Sequence[Item]:
    """Fill ``item.spans`` for every item: greedy non-overlapping entities with the probability
    of their class. Sentences are encoded and scored ``chunk`` at a time (batched by length)."""
    from glode.predict import kept_entity_mask, score_spans

    classes = np.array(model.config.classes, dtype=object)
    bar = progress_bar(total=len(items), desc="predicting", unit="sent", enabled=progress)
    for lo in range(0, len(items), chunk):
        part = items[lo : lo + chunk]
        encoded = encoder.encode([it.tokens for it in part])
        scores = score_spans(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, progress=False)
        for it, enc, sc in zip(part, encoded, scores):
            mask = kept_entity_mask(enc, sc.probs)
            idx = np.flatnonzero(mask)
            best = sc.probs[idx].argmax(axis=1)
            it.spans = [
                (int(enc.span_word_start[i]), int(enc.span_word_end[i]), str(classes[b]), float(sc.probs[i, b]))
                for i, b in zip(idx, best)
            ]
        bar.update(len(part))
    bar.close()
    return items


def format_bio(items: Iterable[Item], gold: bool = False) -> Iterator[str]:
    """CoNLL blocks ``token tag`` (``token gold tag`` with ``gold`` when the input had tags)."""
    for it in items:
        tags = spans_to_tags([(s, e, lab) for s, e, lab, _ in it.spans], len(it.tokens))
        if gold and it.gold is not None:
            yield "".join(f"{t} {g} {p}\n" for t, g, p in zip(it.tokens, it.gold, tags)) + "\n"
        else:
            yield "".join(f"{t} {p}\n" for t, p in zip(it.tokens, tags)) + "\n"


def format_jsonl(items: Iterable[Item]) -> Iterator[str]:
    """One JSON object per sentence: line, tokens, BIO tags, spans with label and score."""
    for it in items:
        tags = spans_to_tags([(s, e, lab) for s, e, lab, _ in it.spans], len(it.tokens))
        rec = {
            "line": it.line,
            "tokens": it.tokens,
            "tags": tags,
            "spans": [
                {"start": s, "end": e, "label": lab, "score": round(p, 6), "text": " ".join(it.tokens[s:e])}
                for s, e, lab, p in it.spans
            ],
        }
        if it.gold is not None:
            rec["gold"] = it.gold
        yield json.dumps(rec, ensure_ascii=False) + "\n"
