"""glode/encoder/tokenizer.py: the XLM-R-style tokenizer (the precompiled normaliser map, word ids,
special tokens, save and load) on the tests' tiny encoder, which is built with it."""

from __future__ import annotations

import numpy as np
import pytest

from glode.encoder import load_encoder
from glode.encoder.tokenizer import build_precompiled_charsmap
from tests.tiny_encoder import build_tiny_encoder


def test_precompiled_charsmap_applies_the_map_exactly():
    from tokenizers.normalizers import Precompiled

    mapping = {"\u200b": " ", "\x01": "", "Ａ": "A", "ﬁ": "fi", "\U0001d400": "A", "①": "1", "é": "e\u0301"}
    norm = Precompiled(build_precompiled_charsmap(mapping))
    for src, dst in mapping.items():
        assert norm.normalize_str(src) == dst, src
    assert norm.normalize_str("xＡ\u200byﬁ\x01z") == "xA yfiz"
    assert norm.normalize_str("unchanged 北京 ü") == "unchanged 北京 ü"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=["Rotterdam", "Vries", "Zoë"])


def test_tiny_tokenizer_word_ids_and_special_tokens(tiny_dir):
    _, tok = load_encoder(tiny_dir)
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.bos_token_id == 0 and tok.eos_token_id == 2
    assert tok.mask_token_id == len(tok) - 1 and tok.convert_ids_to_tokens(tok.mask_token_id) == "<mask>"
    words = ["Jan", "de", "Vries", "香港", "☃", "Zoë"]
    enc = tok(words, is_split_into_words=True)
    wids = enc.word_ids()
    assert wids[0] is None and wids[-1] is None
    assert enc["input_ids"][0] == 0 and enc["input_ids"][-1] == 2
    assert sorted(set(w for w in wids if w is not None)) == list(range(len(words)))
    assert wids[1:-1] == sorted(wids[1:-1])  # each word's pieces are contiguous
    assert tok.unk_token_id in enc["input_ids"]  # ☃ is outside the tiny alphabet
    pieces = enc.tokens()
    # every word starts with a piece carrying ▁; CJK starts with a bare ▁ as in XLM-R
    assert all(pieces[wids.index(w)].startswith("\u2581") for w in range(len(words)))
    assert pieces[wids.index(3)] == "\u2581"
    # <mask> strips the space on its left; pairs follow XLM-R's template
    assert tok("de <mask>")["input_ids"] == [0, tok.convert_tokens_to_ids("\u2581de"), tok.mask_token_id, 2]
    pair = tok("de", "de")["input_ids"]
    assert pair[0] == 0 and pair.count(2) == 3
    # the normaliser: zero-width space splits, full-width letters fold
    assert tok("de\u200bde").tokens() == tok("de de").tokens()
    assert tok("ｄｅ").tokens() == tok("de").tokens()


def test_tiny_tokenizer_save_load_round_trip(tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    _, tok = load_encoder(tiny_dir)
    tok.save_pretrained(tmp_path / "again")
    again = AutoTokenizer.from_pretrained(tmp_path / "again", local_files_only=True)
    texts = ["Jan de Vries lives in Rotterdam.", "香港 ｗｉｄｅ \u200b Zoë <mask>", "  "]
    assert again(texts)["input_ids"] == tok(texts)["input_ids"]
    words = [["香", "港"], ["Vries", "."]]
    a = again(words, is_split_into_words=True)
    b = tok(words, is_split_into_words=True)
    assert a["input_ids"] == b["input_ids"] and a.word_ids(1) == b.word_ids(1)
    assert again.is_fast and again.mask_token_id == tok.mask_token_id


def test_tiny_encoder_is_deterministic(tmp_path):
    from safetensors.numpy import load_file

    a = load_file(build_tiny_encoder(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(build_tiny_encoder(tmp_path / "b", seed=3) / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
