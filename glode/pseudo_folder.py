"""A round's pseudo_label folder (``rounds/rN/pseudo``): what the pseudo_label stage writes and
the denoise and train_target stages read.

* ``spans.parquet`` (kind ``target_spans``): every candidate span of the target corpus with the
  previous model's class probabilities, its argmax, whether it is a kept entity, and gold;
* ``target_reps.npy``, ``source_reps.npy``: the L2-normalised span vectors of target and source
  spans, in float16 (:data:`REPS_DTYPE`); ``source_labels.npy`` the source spans' gold class ids;
* ``glode_pseudo.json``: the manifest (format version, classes, sizes) that marks the folder complete.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from glode.atomic import atomic_path, write_json
from glode.errors import GlodeError
from glode.tables import read_table

SPANS_KIND = "target_spans"
TARGET_REPS = "target_reps.npy"
SOURCE_REPS = "source_reps.npy"
SOURCE_LABELS = "source_labels.npy"
SPANS_FILE = "spans.parquet"
PSEUDO_MANIFEST = "glode_pseudo.json"
PSEUDO_FORMAT_VERSION = 1
#: the span vectors' storage type: unit vectors whose cosines the views compare lose ~1e-4 in
#: float16 (half of float32's disk, and of what the denoise step reads; docs/SCALE.md "Corpus
#: scale" has the check against float32 labels); the views compute in float32
REPS_DTYPE = np.float16


def spans_schema(classes: Sequence[str]) -> pa.Schema:
    """The target span table's columns (``spans.parquet``); fixed, so that it can be written in
    row groups whose gold column may be all empty in one group and not in another."""
    return pa.schema([("sentence_id", pa.int64()), ("start", pa.int32()), ("end", pa.int32()), ("text", pa.string()),
                      *[(c, pa.float32()) for c in classes], ("label", pa.string()), ("kept", pa.bool_()),
                      ("gold", pa.string())])


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


@contextlib.contextmanager
def array_writer(path: Path, rows: int, width: int, dtype=REPS_DTYPE) -> Iterator[Callable[[np.ndarray], None]]:
    """Write a ``(rows, width)`` ``.npy`` array block by block (``write(block)``), atomically: what
    :func:`save_array` writes from the whole array, without holding it. Fewer or more rows than
    announced is an error (and no file)."""
    dtype = np.dtype(dtype)
    written = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                                                  "shape": (int(rows), int(width))})

        def write(block: np.ndarray) -> None:
            nonlocal written
            if block.ndim != 2 or block.shape[1] != width or written + len(block) > rows:
                raise ValueError(f"{path}: block of shape {block.shape} does not fit a ({rows}, {width}) array "
                                 f"after {written} rows")
            fh.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
            written += len(block)

        yield write
        if written != rows:
            raise ValueError(f"{path}: {written} rows written of the {rows} announced")


class VectorFile:
    """A ``(rows, width)`` ``.npy`` array read from disk a block at a time: what the denoise step
    needs of the target span vectors (``len``, ``shape``, row slices and row lists), without
    holding them (256 bytes a span at 128 float16 dimensions: 3.3 GB at 192,000 CoNLL sentences).
    Reads go through the page cache, which the process's resident memory does not count."""

    BLOCK = 65536  #: rows read at a time for a list of rows

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise GlodeError(f"{path}: missing; run the pseudo_label stage of this round (dvc repro)")
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise GlodeError(f"{path}: not a 2-d array of span vectors; rerun the pseudo_label stage (dvc repro --force)")
        self.shape, self.dtype, self.ndim = tuple(shape), dtype, 2

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, a: int, b: int) -> np.ndarray:
        width = self.shape[1]
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + a * width * self.dtype.itemsize)
            out = np.fromfile(fh, dtype=self.dtype, count=(b - a) * width)
        if out.size != (b - a) * width:
            raise GlodeError(f"{self.path}: truncated; rerun the pseudo_label stage (dvc repro --force)")
        return out.reshape(b - a, width)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            a, b, step = key.indices(self.shape[0])
            if step != 1:
                raise IndexError("VectorFile reads contiguous row slices or lists of rows")
            return self._rows(a, max(a, b))
        rows = np.asarray(key)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        for a in range(0, self.shape[0], self.BLOCK):
            lo, hi = np.searchsorted(ordered, [a, a + self.BLOCK])
            if hi > lo:
                out[order[lo:hi]] = self._rows(a, min(a + self.BLOCK, self.shape[0]))[ordered[lo:hi] - a]
        return out


def load_array(path: Path) -> np.ndarray:
    if not Path(path).is_file():
        raise GlodeError(f"{path}: missing; run the pseudo_label stage of this round (dvc repro)")
    return np.load(path, allow_pickle=False)


def write_pseudo_manifest(pseudo_dir: Path, classes: Sequence[str], **info) -> dict:
    """Write the manifest that marks a complete pseudo_label folder of this format version."""
    manifest = {"format_version": PSEUDO_FORMAT_VERSION, "kind": "glode-pseudo", "classes": list(classes), **info}
    write_json(Path(pseudo_dir) / PSEUDO_MANIFEST, manifest)
    return manifest


def read_pseudo_manifest(pseudo_dir: Path) -> dict:
    """The manifest of a pseudo_label folder, after checking its format version."""
    path = Path(pseudo_dir) / PSEUDO_MANIFEST
    if not path.is_file():
        raise GlodeError(f"{pseudo_dir}: not a pseudo_label output folder (no {PSEUDO_MANIFEST}); "
                         "run the round's pseudo_label stage (dvc repro)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GlodeError(f"{path}: unreadable ({exc}); rerun the round's pseudo_label stage (dvc repro --force)") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != PSEUDO_FORMAT_VERSION:
        raise GlodeError(f"{path}: pseudo-label folder format version {version!r}, this glode reads version "
                         f"{PSEUDO_FORMAT_VERSION}; rerun the round's pseudo_label stage (dvc repro --force) "
                         "or use the matching glode version")
    return manifest


def read_spans(pseudo_dir: Path, text: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The span table of a complete pseudo_label folder and the classes it was scored for;
    ``text=False`` leaves out the span texts, the most of its memory at a million sentences
    (:func:`read_span_texts` reads those of some rows)."""
    read_pseudo_manifest(pseudo_dir)
    spans = read_table(Path(pseudo_dir) / SPANS_FILE, SPANS_KIND, skip=() if text else ("text",))
    return spans, json.loads(spans.attrs["glode"]["classes"])


def read_span_texts(pseudo_dir: Path, rows: np.ndarray) -> list[str]:
    """The texts of the span table's ``rows`` (positions), reading only its text column."""
    import pyarrow.parquet as pq

    column = pq.read_table(Path(pseudo_dir) / SPANS_FILE, columns=["text"]).column(0)
    return column.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()
