"""``glode predict``: use a trained model folder on new text: read sentences, predict entity spans.

The command's options live in glode/cli.py, which calls these; the model is loaded exactly as
the evaluate stage loads it (``glode.model.load_model``), and spans are scored and decoded by
``glode.scoring`` (greedy non-overlapping decoding, as in evaluation). CoNLL input is read by
``glode.conll`` (lenient mode), the output written by ``glode.output_formats``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from glode.conll import decode_utf8, looks_like_conll, parse_conll
from glode.errors import GlodeError, InputError
from glode.output_formats import TaggedSentence
from glode.progress import progress as progress_bar

TOKENIZERS = ("whitespace", "simple")
#: Words, numbers (with inner . , ' - joined), and every other non-space character on its own.
_SIMPLE = re.compile(r"\w+(?:[.,'’\-]\w+)*|[^\w\s]", re.UNICODE)


def tokenize(text: str, how: str = "whitespace") -> list[str]:
    """Split a line into words: on whitespace, or ``simple``: punctuation split off words."""
    if how == "whitespace":
        return text.split()
    if how == "simple":
        return _SIMPLE.findall(text)
    raise GlodeError(f"unknown tokenizer {how!r}; use one of {', '.join(TOKENIZERS)}")


def read_text(lines: Iterable[str], how: str = "whitespace") -> list[TaggedSentence]:
    """One sentence per non-blank line."""
    items = []
    for n, line in enumerate(lines, start=1):
        tokens = tokenize(line.rstrip("\r\n"), how)
        if tokens:
            items.append(TaggedSentence(tokens, n, sentence_id=len(items)))
    return items


def read_input(path: str, fmt: str = "auto", how: str = "whitespace") -> tuple[list[TaggedSentence], str]:
    """Sentences from a file (``-``: stdin) as text or CoNLL; returns them and the format used."""
    if path == "-":
        text = sys.stdin.read()
        name = "<stdin>"
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(p, None, "file not found; give a text file with one sentence per line, or a CoNLL file")
        text = decode_utf8(p, p.read_bytes())  # a UTF-16 file is named as such, with the iconv command
        name = str(p)
    lines = text.split("\n")
    if fmt == "auto":
        fmt = "conll" if looks_like_conll(lines) else "text"
    if fmt == "conll":
        return [TaggedSentence(s.tokens, s.line, s.tags, sentence_id=i)
                for i, s in enumerate(parse_conll(lines, name, strict=False))], fmt
    if fmt == "text":
        items = read_text(lines, how)
        if not items:
            raise InputError(name, None, "no sentences found (only blank lines)")
        return items, fmt
    raise GlodeError(f"unknown input format {fmt!r}; use auto, text or conll")


def load_predictor(model_dir: str | Path, encoder_dir: str | Path | None = None, device=None):
    """Model, tokenizer and sentence encoder of a model folder, loaded as the evaluate stage does;
    the model on ``device`` (a DeviceSettings; default settings: ``auto``)."""
    from glode.device import place_model
    from glode.features import SentenceEncoder
    from glode.model import load_model
    from glode.settings import DeviceSettings

    device = device or DeviceSettings()
    model, tokenizer, meta = load_model(model_dir, encoder_dir)
    place_model(model, device.device, device.precision)
    encoder = SentenceEncoder(tokenizer, model.config.max_span_len, model.config.max_seq_len)
    return model, tokenizer, encoder


def predict_items(
    model,
    tokenizer,
    encoder,
    items: Sequence[TaggedSentence],
    batch_size: int = 64,
    chunk: int = 2048,
    progress: bool = True,
    precision: str = "fp32",
) -> Sequence[TaggedSentence]:
    """Fill ``item.spans`` for every item: greedy non-overlapping entities with the probability
    of their class. Sentences are encoded and scored ``chunk`` at a time (batched by length)."""
    from glode.scoring import kept_entity_mask, score_spans

    classes = np.array(model.config.classes, dtype=object)
    bar = progress_bar(total=len(items), desc="predicting", unit="sent", enabled=progress)
    for lo in range(0, len(items), chunk):
        part = items[lo : lo + chunk]
        encoded = encoder.encode([it.tokens for it in part])
        scores = score_spans(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, progress=False,
                             precision=precision)
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
