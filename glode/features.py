"""Turn word-tokenised sentences into the tensors the span model reads.

Words are tokenised one by one (``is_split_into_words``) and aligned with the fast
tokenizer's word ids. A word is represented by its first and last *informative*
sub-tokens: with SentencePiece vocabularies many words (65% of WikiAnn Chinese
characters) start with a bare ``▁`` piece that carries no information, so a bare ``▁``
followed by another piece of the same word is dropped from the input altogether. That
also shortens character-tokenised sentences, which is what the encoder saw in
pre-training (Chinese text has no spaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from glode.spans import candidate_spans

#: Case classes of a word, summed over the words of a span (METHOD.md §1).
CASE_CLASSES = ("upper", "lower", "title", "digit", "other")
N_CASES = len(CASE_CLASSES)
#: Sub-token width buckets 0, 1, 2, 3+ (end - start in sub-tokens).
N_WIDTH_BUCKETS = 4


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

    ``span_*`` arrays list every candidate word span of width 1..max_span_len among the
    words that fit in ``max_seq_len`` sub-tokens (``n_visible`` of ``n_words``).
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


class SentenceEncoder:
    """Tokenises word lists for one tokenizer, span cap and sequence length."""

    def __init__(self, tokenizer, max_span_len: int, max_seq_len: int):
        if max_span_len < 1:
            raise ValueError("max_span_len must be >= 1")
        if max_seq_len < 3:
            raise ValueError("max_seq_len must be >= 3")
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

    def encode(self, batch_words: Sequence[Sequence[str]]) -> list[EncodedSentence]:
        return [self._encode_one(words, pieces) for words, pieces in zip(batch_words, self.word_pieces(batch_words))]

    def _encode_one(self, words: Sequence[str], pieces: list[list[int]]) -> EncodedSentence:
        budget = self.max_seq_len - 2
        ids = [self.cls_id]
        starts, ends = [], []
        for p in pieces:
            if len(ids) - 1 + len(p) > budget:
                break
            starts.append(len(ids))
            ids.extend(p)
            ends.append(len(ids) - 1)
        ids.append(self.sep_id)
        n_visible = len(starts)
        cands = candidate_spans(n_visible, self.max_span_len)
        ws = np.fromiter((s for s, _ in cands), dtype=np.int64, count=len(cands))
        we = np.fromiter((e for _, e in cands), dtype=np.int64, count=len(cands))
        starts_a = np.asarray(starts, dtype=np.int64)
        ends_a = np.asarray(ends, dtype=np.int64)
        cases = np.zeros((n_visible + 1, N_CASES), dtype=np.float32)
        for i in range(n_visible):
            case = word_case(words[i])
            if case is not None:
                cases[i + 1, case] = 1.0
        cum = np.cumsum(cases, axis=0)  # prefix sums: counts over [s, e) = cum[e] - cum[s]
        return EncodedSentence(
            input_ids=np.asarray(ids, dtype=np.int64),
            n_words=len(words),
            n_visible=n_visible,
            span_word_start=ws,
            span_word_end=we,
            span_tok_start=starts_a[ws] if len(cands) else ws,
            span_tok_end=ends_a[we - 1] if len(cands) else we,
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


def collate(sentences: Sequence[EncodedSentence], pad_id: int) -> SpanBatch:
    """Pad a list of sentences into one batch; spans are concatenated in sentence order."""
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
