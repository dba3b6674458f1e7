"""Versioned parquet tables passed between pipeline stages.

Every table carries `glode_kind` and `glode_schema_version` in its parquet key-value metadata,
so a stage that is handed the wrong file (or one from an older/newer glode) stops with a clear
message instead of failing on a missing column later. Writes are atomic and deterministic
(same frame -> same bytes), which keeps DVC from seeing spurious changes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from glode.atomic import atomic_path
from glode.conll import Sentence
from glode.errors import InputError
from glode.spans import tags_to_spans

__all__ = [
    "SCHEMA_VERSION",
    "SENTENCES",
    "LABELS_KIND",
    "SCHEMAS",
    "sentences_frame",
    "write_table",
    "table_writer",
    "read_table",
    "table_metadata",
    "write_sentences",
    "read_sentences",
]

SCHEMA_VERSION = 1
KIND_KEY = "glode_kind"
VERSION_KEY = "glode_schema_version"

SPAN_TYPE = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())])

#: Kind name of the sentences table.
SENTENCES = "sentences"
#: Kind name of a round's refined label table (rounds/rN/labels.parquet, glode/label_table.py).
LABELS_KIND = "labels"

#: Known schemas by kind; `write_table` uses them when no schema is passed and `read_table`
#: checks files against them. Other modules may add their kinds here.
SCHEMAS: dict[str, pa.Schema] = {
    SENTENCES: pa.schema(
        [
            ("sentence_id", pa.int64()),
            ("tokens", pa.list_(pa.string())),
            ("tags", pa.list_(pa.string())),
            ("spans", pa.list_(SPAN_TYPE)),
            ("line", pa.int64()),
        ]
    ),
}


def sentences_frame(sentences: Iterable[Sentence]) -> pd.DataFrame:
    """One row per sentence: id (0..n-1), tokens, BIO2 tags, gold spans (end exclusive), source line."""
    rows = list(sentences)
    return pd.DataFrame(
        {
            "sentence_id": pd.Series(range(len(rows)), dtype="int64"),
            "tokens": pd.Series([list(s.tokens) for s in rows], dtype=object),
            "tags": pd.Series([list(s.tags) for s in rows], dtype=object),
            "spans": pd.Series(
                [[{"start": sp.start, "end": sp.end, "label": sp.label} for sp in tags_to_spans(s.tags)] for s in rows],
                dtype=object,
            ),
            "line": pd.Series([int(s.line) for s in rows], dtype="int64"),
        }
    )


def _metadata(kind: str, extra: Mapping | None) -> dict[bytes, bytes]:
    """Key-value metadata: glode keys plus extras (non-string values JSON-encoded, sorted keys)."""
    meta = {KIND_KEY: kind, VERSION_KEY: str(SCHEMA_VERSION)}
    for key, value in sorted((extra or {}).items()):
        key = str(key)
        if key in meta:
            raise ValueError(f"extra_metadata may not set {key!r}")
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return {k.encode(): v.encode() for k, v in meta.items()}


def write_table(
    df: pd.DataFrame,
    path: str | Path,
    kind: str,
    extra_metadata: dict | None = None,
    schema: pa.Schema | None = None,
) -> Path:
    """Write `df` as a parquet table of `kind`, atomically and byte-reproducibly.

    The arrow schema is `schema`, else the registered `SCHEMAS[kind]`, else inferred from the
    frame. The frame's columns must be exactly the schema's (no silent drops); the index is not
    stored. pandas metadata is left out so files do not depend on pandas dtype details.
    """
    if schema is None:
        schema = SCHEMAS.get(kind)
    if schema is not None:
        if list(df.columns) != list(schema.names):
            raise ValueError(f"{kind} table: columns {list(df.columns)} do not match the schema {schema.names}")
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    else:
        table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(_metadata(kind, extra_metadata))
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


@contextlib.contextmanager
def table_writer(path: str | Path, kind: str, schema: pa.Schema,
                 extra_metadata: dict | None = None) -> Iterator[Callable[[pd.DataFrame], None]]:
    """Write a parquet table of `kind` frame by frame, one row group per frame, atomically:
    ``with table_writer(path, kind, schema) as write: write(frame)``. What :func:`write_table`
    writes from one frame, for tables too large to hold as one (the target span table of a large
    corpus); the file appears only when the block ends without an error."""
    schema = schema.with_metadata(_metadata(kind, extra_metadata))
    path = Path(path)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        def write(df: pd.DataFrame) -> None:
            if list(df.columns) != list(schema.names):
                raise ValueError(f"{kind} table: columns {list(df.columns)} do not match the schema {schema.names}")
            table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
            writer.write_table(table.replace_schema_metadata(schema.metadata))

        yield write


def table_metadata(path: str | Path, kind: str | None = None) -> dict[str, str]:
    """The glode metadata of a table file, after checking it is a glode table (of `kind`, if given)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "table not found; run the pipeline stage that writes it (`dvc repro`)")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(path, None, f"is not a readable parquet file ({err}); delete it and re-run the stage "
                         "that writes it (`dvc repro`)") from None
    meta = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in (schema.metadata or {}).items()}
    if KIND_KEY not in meta or VERSION_KEY not in meta:
        raise InputError(path, None, "is a parquet file without glode metadata (not written by glode); "
                         "create it with the glode pipeline stage instead of another tool")
    if kind is not None and meta[KIND_KEY] != kind:
        raise InputError(path, None, f"holds a '{meta[KIND_KEY]}' table, but a '{kind}' table is needed here; "
                         "check the path in params.yaml / dvc.yaml")
    if meta[VERSION_KEY] != str(SCHEMA_VERSION):
        raise InputError(path, None, f"has table schema version {meta[VERSION_KEY]!r}, but this glode reads "
                         f"version {SCHEMA_VERSION}; re-run the stage that writes it (`dvc repro --force`) "
                         "or use the matching glode version")
    return meta


def read_table(path: str | Path, kind: str, skip: Iterable[str] = ()) -> pd.DataFrame:
    """Read a glode table of `kind`, checking metadata (and the registered schema) first; the
    columns named in `skip` are not read.

    List columns come back as Python lists (struct items as dicts); `df.attrs["glode"]` holds
    the file's metadata. Any problem with the file is a GlodeError naming it.
    """
    path = Path(path)
    meta = table_metadata(path, kind)
    skip = set(skip)
    try:
        table = pq.read_table(path, columns=[n for n in pq.read_schema(path).names if n not in skip] if skip else None)
    except (pa.ArrowException, OSError) as err:
        raise InputError(path, None, f"cannot be read as parquet ({err}); delete it and re-run the stage "
                         "that writes it (`dvc repro`)") from None
    expected = SCHEMAS.get(kind)
    if expected is not None and not skip and not table.schema.remove_metadata().equals(expected.remove_metadata()):
        raise InputError(path, None, f"columns do not match the '{kind}' schema (found {table.schema.names}, "
                         f"expected {expected.names}); re-run the stage that writes it (`dvc repro --force`)")
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_struct(column.type):
            columns[name] = pd.Series(column.to_pylist(), dtype=object)
        else:
            columns[name] = column.to_pandas()
    df = pd.DataFrame(columns, columns=table.column_names)
    df.attrs["glode"] = meta
    return df


def write_sentences(sentences: Iterable[Sentence], path: str | Path, extra_metadata: dict | None = None) -> Path:
    """Write sentences as a `sentences` table."""
    return write_table(sentences_frame(sentences), path, SENTENCES, extra_metadata)


def read_sentences(path: str | Path) -> list[Sentence]:
    """Read a `sentences` table back into `Sentence` objects (in sentence_id order)."""
    df = read_table(path, SENTENCES)
    if not isinstance(df, pd.DataFrame) or df.empty:
        return []
    df = df.sort_values("sentence_id", kind="stable")
    return [Sentence(list(tok), list(tag), int(ln)) for tok, tag, ln in zip(df["tokens"], df["tags"], df["line"])]
