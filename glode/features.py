"""Turn word-tokenised sentences into the tensors the span model reads.

Words are tokenised one by one (``is_split_into_words``) and aligned with the fast
tokenizer's word ids. A word is represented by its first and last *informative*
sub-tokens: with SentencePiece vocabularies many words (65% of WikiAnn Chinese
characters) start with a bare ``▁`` piece that carries no information, so a bare ``▁``
followed by another piece of the same word is dropped from the input altogether. That
also shortens character-tokenised sentences, which is what the encoder saw in
pre-training (Chinese text has no spaces).

A sentence longer than ``max_seq_len`` sub-tokens is not cut: it is split into overlapping
windows of words (:func:`window_bounds`), each a model input of its own, and every candidate
span is scored in the window where it has the most context on both sides. A span that no
window holds whole (only possible when single words are huge) is *lost*: it is listed in
``lost_spans`` and counted in the metrics. A single word longer than the whole budget keeps
its first pieces and its last one (``cut_words``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np
import torch

from glode.errors import ParamError
from glode.progress import progress as progress_bar
from glode.spans import candidate_spans

#: Case classes of a word, summed over the words of a span (docs/METHOD.md §1).
CASE_CLASSES = ("upper", "lower", "title", "digit", "other")
N_CASES = len(CASE_CLASSES)
#: Sub-token width buckets 0, 1, 2, 3+ (end - start in sub-tokens).
N_WIDTH_BUCKETS = 4
ENCODE_CHUNK = 1024  # sentences tokenised per call when encoding a corpus (progress granularity)


def word_case(word: str) -> int | None:
    """Index into CASE_CLASSES, or None for words of a caseless script (Arabic, Devanagari,
    CJK...). Such words add nothing to a span's case counts: in English the "other" class is
    almost only punctuation and almost never an entity, so counting a caseless word as
    "other" taught the model that no Arabic word is a name (pseudo-label F1 0.01 on WikiAnn ar).
    """
    if any(ch.isalpha() for ch in word) and word.upper() == word.lower():
        return None
    if word.isdigit():
        return 3
    if word.isupper():
        return 0
    if word.istitle():
        return 2
    if word.islower():
        return 1
    return 4


@dataclass
class EncodedSentence:
    """One sentence as sub-token ids, with word boundaries and candidate spans.

    ``span_*`` arrays list every candidate word span of width 1..max_span_len except the
    ``lost_spans`` (none unless single words are huge); a sentence longer than ``max_seq_len``
    sub-tokens is scored through its ``windows``.
    """

    input_ids: np.ndarray  # (T,) int64, specials included
    n_words: int
    n_visible: int
    span_word_start: np.ndarray  # (S,) int64, word index, inclusive
    span_word_end: np.ndarray  # (S,) int64, word index, exclusive
    span_tok_start: np.ndarray  # (S,) int64, sub-token index of the first word's first piece
    span_tok_end: np.ndarray  # (S,) int64, sub-token index of the last word's last piece
    span_case_counts: np.ndarray  # (S, N_CASES) float32
    span_labels: np.ndarray | None = None  # (S,) int64 hard class ids
    span_soft: np.ndarray | None = None  # (S, C) float32 soft targets
    extra: dict = field(default_factory=dict)
    #: A sentence longer than max_seq_len: its model inputs (overlapping word windows). Each
    #: window's span arrays are a subset of this sentence's (word offsets of the whole
    #: sentence), ``rows`` says which; then ``input_ids`` and ``span_tok_*`` here are only
    #: meaningful per window: feed ``units()`` to the model, never the sentence itself.
    windows: list[EncodedSentence] | None = None
    rows: np.ndarray | None = None  # in a window: indices of its spans in the parent's span arrays
    lost_spans: list[tuple[int, int]] = field(default_factory=list)  # candidates no window holds whole
    cut_words: int = 0  # words with more sub-tokens than fit in one window (pieces cut)

    def units(self) -> list[EncodedSentence]:
        """The model inputs of this sentence: itself, or its windows with span labels and soft
        targets sliced from the sentence's."""
        if not self.windows:
            return [self]
        for w in self.windows:
            w.span_labels = None if self.span_labels is None else self.span_labels[w.rows]
            w.span_soft = None if self.span_soft is None else self.span_soft[w.rows]
        return self.windows


def expand_units(sentences: Sequence[EncodedSentence]) -> list[EncodedSentence]:
    """Every model input of a corpus, in order (long sentences become their windows)."""
    return [u for s in sentences for u in s.units()]


def window_bounds(lengths: Sequence[int], budget: int, overlap_words: int) -> list[tuple[int, int]]:
    """Word windows ``[a, b)`` covering a sentence whose words have ``lengths`` sub-tokens.

    Each window holds as many words as fit in ``budget`` sub-tokens (every word must fit
    alone); the next one starts so that the two share about half a window of sub-tokens and
    at least ``overlap_words`` words (span cap - 1, so every candidate span lies whole in some
    window), always at least one word further on at both ends.
    """
    n = len(lengths)
    if n == 0:
        return [(0, 0)]
    if max(lengths) > budget:
        raise ValueError(f"a word of {max(lengths)} sub-tokens does not fit a budget of {budget}")
    cum = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
    bounds: list[tuple[int, int]] = []
    a = 0
    while True:
        b = max(a + 1, int(np.searchsorted(cum, cum[a] + budget, side="right")) - 1)
        bounds.append((a, b))
        if b >= n:
            return bounds
        half = int(np.searchsorted(cum, cum[b] - budget // 2, side="left"))
        reach = int(np.searchsorted(cum, cum[b + 1] - budget, side="left"))  # the next window holds word b
        a = max(a + 1, reach, min(half, b - overlap_words))


class SentenceEncoder:
    """Tokenises word lists for one tokenizer, span cap and sequence length."""

    def __init__(self, tokenizer, max_span_len: int, max_seq_len: int):
        if max_span_len < 1:
            raise ParamError("model.max-span-len", f"must be >= 1, got {max_span_len}")
        if max_seq_len < 3:
            raise ParamError("model.max-seq-len", f"must be >= 3 (two special tokens and a word), got {max_seq_len}")
        self.tokenizer = tokenizer
        self.max_span_len = max_span_len
        self.max_seq_len = max_seq_len
        cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if cls_id is None or sep_id is None:
            raise ValueError("the tokenizer defines no cls/bos or sep/eos token")
        self.cls_id, self.sep_id = int(cls_id), int(sep_id)
        bare = tokenizer.convert_tokens_to_ids("\u2581")
        self.bare_space_id = None if bare in (None, tokenizer.unk_token_id) else int(bare)

    def word_pieces(self, batch_words: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """Sub-token ids per word per sentence, bare ``▁`` pieces dropped where possible."""
        if not batch_words:
            return []
        enc = self.tokenizer(
            [list(w) for w in batch_words],
            is_split_into_words=True,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # long sentences are windowed (window_bounds), never cut at the model's limit
        )
        out = []
        for i, words in enumerate(batch_words):
            pieces: list[list[int]] = [[] for _ in words]
            for tok_id, word_id in zip(enc["input_ids"][i], enc.word_ids(i)):
                if word_id is not None:
                    pieces[word_id].append(int(tok_id))
            for p in pieces:
                if len(p) > 1 and p[0] == self.bare_space_id:
                    del p[0]
                if not p:  # a word the tokenizer dropped entirely (e.g. a lone control char)
                    p.append(int(self.tokenizer.unk_token_id))
            out.append(pieces)
        return out

    def encode(self, batch_words: Sequence[Sequence[str]], progress: bool = False,
               desc: str = "encoding") -> list[EncodedSentence]:
        """Encode sentences ``ENCODE_CHUNK`` at a time (the same result as one call), with progress."""
        out: list[EncodedSentence] = []
        bar = progress_bar(total=len(batch_words), desc=desc, unit="sent", enabled=progress)
        for lo in range(0, len(batch_words), ENCODE_CHUNK):
            part = batch_words[lo : lo + ENCODE_CHUNK]
            out += [self._encode_one(words, pieces) for words, pieces in zip(part, self.word_pieces(part))]
            bar.update(len(part))
        bar.close()
        return out

    def _encode_one(self, words: Sequence[str], pieces: list[list[int]]) -> EncodedSentence:
        budget = self.max_seq_len - 2
        cut = 0
        for i, p in enumerate(pieces):
            if len(p) > budget:  # one word longer than a whole window: keep its first and last pieces
                pieces[i] = p[: budget - 1] + p[-1:]
                cut += 1
        n = len(words)
        cases = np.zeros((n + 1, N_CASES), dtype=np.float32)
        for i in range(n):
            case = word_case(words[i])
            if case is not None:
                cases[i + 1, case] = 1.0
        cum = np.cumsum(cases, axis=0)  # prefix sums: counts over [s, e) = cum[e] - cum[s]
        cands = candidate_spans(n, self.max_span_len)
        ws = np.fromiter((s for s, _ in cands), dtype=np.int64, count=len(cands))
        we = np.fromiter((e for _, e in cands), dtype=np.int64, count=len(cands))
        lengths = [len(p) for p in pieces]
        if sum(lengths) <= budget:
            sent = self._window(pieces, 0, n, ws, we, cum)
            sent.cut_words = cut
            return sent
        bounds = window_bounds(lengths, budget, self.max_span_len - 1)
        # each span goes to the window where it has the most context (words) on its worse side
        margin = np.full((len(bounds), len(cands)), -1, dtype=np.int64)
        for j, (a, b) in enumerate(bounds):
            inside = (ws >= a) & (we <= b)
            margin[j, inside] = np.minimum(ws - a, b - we)[inside]
        best = margin.argmax(axis=0)
        scored = margin.max(axis=0, initial=-1) >= 0
        windows = []
        for j, (a, b) in enumerate(bounds):
            rows = np.flatnonzero(scored & (best == j))
            w = self._window(pieces, a, b, ws[rows], we[rows], cum)
            w.rows = rows
            windows.append(w)
        keep = np.flatnonzero(scored)
        tok_start = np.zeros(len(cands), dtype=np.int64)
        tok_end = np.zeros(len(cands), dtype=np.int64)
        for w in windows:
            tok_start[w.rows], tok_end[w.rows] = w.span_tok_start, w.span_tok_end
        for w in windows:  # rows index the sentence's arrays, which hold the scored spans only
            w.rows = np.searchsorted(keep, w.rows)
        return EncodedSentence(
            input_ids=windows[0].input_ids,
            n_words=n,
            n_visible=n,
            span_word_start=ws[keep],
            span_word_end=we[keep],
            span_tok_start=tok_start[keep],
            span_tok_end=tok_end[keep],
            span_case_counts=(cum[we[keep]] - cum[ws[keep]]).astype(np.float32),
            windows=windows,
            lost_spans=[(int(s), int(e)) for s, e in zip(ws[~scored], we[~scored])],
            cut_words=cut,
        )

    def _window(self, pieces, a: int, b: int, ws: np.ndarray, we: np.ndarray, cum: np.ndarray) -> EncodedSentence:
        """Words ``a..b-1`` as one model input, with the given spans (all inside it)."""
        ids = [self.cls_id]
        starts, ends = [], []
        for p in pieces[a:b]:
            starts.append(len(ids))
            ids.extend(p)
            ends.append(len(ids) - 1)
        ids.append(self.sep_id)
        starts_a = np.asarray(starts, dtype=np.int64)
        ends_a = np.asarray(ends, dtype=np.int64)
        return EncodedSentence(
            input_ids=np.asarray(ids, dtype=np.int64),
            n_words=len(pieces),
            n_visible=b - a,
            span_word_start=ws,
            span_word_end=we,
            span_tok_start=starts_a[ws - a] if len(ws) else ws.copy(),
            span_tok_end=ends_a[we - 1 - a] if len(we) else we.copy(),
            span_case_counts=(cum[we] - cum[ws]).astype(np.float32),
        )


def attach_gold(sentence: EncodedSentence, gold_spans, label_index: dict[str, int]) -> EncodedSentence:
    """Hard class ids for every candidate span: the gold type where a gold span matches, else O."""
    lookup = {(int(s), int(e)): label_index[lab] for s, e, lab in gold_spans}
    sentence.span_labels = np.fromiter(
        (lookup.get((int(s), int(e)), 0) for s, e in zip(sentence.span_word_start, sentence.span_word_end)),
        dtype=np.int64,
        count=len(sentence.span_word_start),
    )
    return sentence


@dataclass
class SpanBatch:
    """Padded sub-token ids plus flattened span indices over the whole batch."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    span_sentence: torch.Tensor  # (S,) row in the batch
    span_start: torch.Tensor  # (S,)
    span_end: torch.Tensor  # (S,)
    width_bucket: torch.Tensor  # (S,)
    word_len: torch.Tensor  # (S,)
    case_counts: torch.Tensor  # (S, N_CASES)
    labels: torch.Tensor | None  # (S,)
    soft: torch.Tensor | None  # (S, C)

    def shard(self, rank: int, size: int) -> "SpanBatch | None":
        """Every ``size``-th sentence from ``rank`` on, with its spans, or None when the batch has
        too few sentences to give this process one (data-parallel training, glode/distributed.py)."""
        rows = torch.arange(rank, len(self.input_ids), size)
        if len(rows) == 0:
            return None
        keep = self.span_sentence % size == rank
        per_span = [f.name for f in fields(self) if f.name not in ("input_ids", "attention_mask", "span_sentence")]
        picked = {name: None if getattr(self, name) is None else getattr(self, name)[keep] for name in per_span}
        picked.update(input_ids=self.input_ids[rows], attention_mask=self.attention_mask[rows],
                      span_sentence=self.span_sentence[keep] // size)
        return SpanBatch(**picked)

    def to(self, device: torch.device) -> "SpanBatch":
        """The batch on ``device`` (itself where it is there already: the CPU run copies nothing)."""
        if self.input_ids.device == torch.device(device):
            return self
        return SpanBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                            for f in fields(self)})


def collate(sentences: Sequence[EncodedSentence], pad_id: int) -> SpanBatch:
    """Pad a list of sentences into one batch; spans are concatenated in sentence order.

    A sentence split into windows contributes its windows (``units()``) in its place.
    """
    sentences = expand_units(sentences)
    width = max(len(s.input_ids) for s in sentences)
    ids = np.full((len(sentences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sentences), width), dtype=np.int64)
    for i, s in enumerate(sentences):
        ids[i, : len(s.input_ids)] = s.input_ids
        mask[i, : len(s.input_ids)] = 1
    counts = [len(s.span_word_start) for s in sentences]
    row = np.repeat(np.arange(len(sentences), dtype=np.int64), counts)
    cat = lambda name: np.concatenate([getattr(s, name) for s in sentences])  # noqa: E731
    tok_start, tok_end = cat("span_tok_start"), cat("span_tok_end")
    word_len = cat("span_word_end") - cat("span_word_start")
    labels = soft = None
    if all(s.span_labels is not None for s in sentences):
        labels = torch.from_numpy(cat("span_labels"))
    if all(s.span_soft is not None for s in sentences):
        soft = torch.from_numpy(np.concatenate([s.span_soft for s in sentences]).astype(np.float32))
    return SpanBatch(
        input_ids=torch.from_numpy(ids),
        attention_mask=torch.from_numpy(mask),
        span_sentence=torch.from_numpy(row),
        span_start=torch.from_numpy(tok_start),
        span_end=torch.from_numpy(tok_end),
        width_bucket=torch.from_numpy(np.minimum(tok_end - tok_start, N_WIDTH_BUCKETS - 1)),
        word_len=torch.from_numpy(word_len),
        case_counts=torch.from_numpy(np.concatenate([s.span_case_counts for s in sentences])),
        labels=labels,
        soft=soft,
    )


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (for inference: less padding), in a fixed order."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
