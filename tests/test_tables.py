"""Versioned parquet tables: schema, reproducible bytes, and clear errors for wrong files."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glode.conll import Sentence
from glode.errors import GlodeError
from glode.tables import SCHEMA_VERSION, SCHEMAS, read_sentences, read_table, sentences_frame, table_metadata, write_table

SENTS = [
    Sentence(["Anna", "lebt", "in", "Sankt", "Gallen"], ["B-PER", "O", "O", "B-LOC", "I-LOC"], 1),
    Sentence(["Ajax", "wint", "."], ["B-ORG", "O", "O"], 7),
    Sentence(["niets"], ["O"], 11),
]


def test_sentences_frame_has_ids_tokens_tags_spans_and_lines():
    df = sentences_frame(SENTS)
    assert list(df.columns) == ["sentence_id", "tokens", "tags", "spans", "line"]
    assert df["sentence_id"].tolist() == [0, 1, 2] and str(df["sentence_id"].dtype) == "int64"
    assert df["spans"][0] == [{"start": 0, "end": 1, "label": "PER"}, {"start": 3, "end": 5, "label": "LOC"}]
    assert df["spans"][2] == []
    assert df["line"].tolist() == [1, 7, 11]


def test_write_read_round_trip_and_schema(tmp_path):
    path = tmp_path / "t" / "s.parquet"
    write_table(sentences_frame(SENTS), path, "sentences", extra_metadata={"source_file": "x.txt", "n": 3})
    schema = pq.read_schema(path)
    assert schema.field("spans").type == pa.list_(
        pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())])
    )
    assert schema.field("tokens").type == pa.list_(pa.string())
    assert schema.metadata[b"glode_kind"] == b"sentences"
    assert schema.metadata[b"glode_schema_version"] == str(SCHEMA_VERSION).encode() == b"1"
    assert b"pandas" not in schema.metadata
    df = read_table(path, "sentences")
    assert df["tokens"][0] == SENTS[0].tokens
    assert df.attrs["glode"]["source_file"] == "x.txt" and df.attrs["glode"]["n"] == "3"
    assert read_sentences(path) == SENTS
    assert [p.name for p in path.parent.iterdir()] == ["s.parquet"]


def test_rewriting_a_table_gives_identical_bytes(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_table(sentences_frame(SENTS), a, "sentences", {"k": "v"})
    first = a.read_bytes()
    write_table(sentences_frame(SENTS), a, "sentences", {"k": "v"})
    write_table(sentences_frame(list(SENTS)), b, "sentences", {"k": "v"})
    assert a.read_bytes() == first == b.read_bytes()


def test_an_empty_table_reads_back_as_no_sentences(tmp_path):
    p = tmp_path / "e.parquet"
    write_table(sentences_frame([]), p, "sentences")
    assert read_sentences(p) == []


def test_other_kinds_infer_schema(tmp_path):
    p = tmp_path / "x.parquet"
    df = pd.DataFrame({"sentence_id": [0, 1], "probs": [[0.5, 0.5], [1.0, 0.0]]})
    write_table(df, p, "soft_labels")
    back = read_table(p, "soft_labels")
    assert back["probs"].tolist() == [[0.5, 0.5], [1.0, 0.0]]
    with pytest.raises(ValueError):
        write_table(df, tmp_path / "y.parquet", "sentences")  # columns do not fit the sentences schema


def _error(path, kind="sentences") -> str:
    with pytest.raises(GlodeError) as info:
        read_table(path, kind)
    assert str(path) in str(info.value)
    return str(info.value)


def test_a_missing_table_is_an_error_saying_not_found(tmp_path):
    assert "not found" in _error(tmp_path / "none.parquet")


def test_a_file_that_is_not_parquet_is_an_error(tmp_path):
    p = tmp_path / "junk.parquet"
    p.write_bytes(b"definitely not parquet")
    assert "parquet" in _error(p)


def test_a_parquet_file_not_written_by_glode_is_an_error(tmp_path):
    p = tmp_path / "foreign.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(p)
    assert "not written by glode" in _error(p)


def test_a_table_of_another_kind_is_an_error_naming_both_kinds(tmp_path):
    p = tmp_path / "s.parquet"
    write_table(sentences_frame(SENTS), p, "sentences")
    msg = _error(p, "spans")
    assert "'sentences'" in msg and "'spans'" in msg


def test_a_table_of_an_unknown_version_is_an_error_naming_it(tmp_path):
    p = tmp_path / "v.parquet"
    write_table(sentences_frame(SENTS), p, "sentences")
    table = pq.read_table(p)
    meta = dict(table.schema.metadata)
    meta[b"glode_schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), p)
    assert "version '99'" in _error(p)
    with pytest.raises(GlodeError):
        table_metadata(p)


def test_a_table_whose_schema_differs_from_its_kind_is_an_error(tmp_path):
    p = tmp_path / "m.parquet"
    write_table(pd.DataFrame({"sentence_id": [0]}), p, "sentences", schema=pa.schema([("sentence_id", pa.int64())]))
    assert "schema" in _error(p)


def test_a_table_written_in_row_groups_reads_back_as_the_whole_frame(tmp_path):
    from glode.tables import table_writer

    frame = sentences_frame(SENTS)
    with table_writer(tmp_path / "t.parquet", "sentences", SCHEMAS['sentences'], {"note": "x"}) as write:
        write(frame.iloc[:2])
        write(frame.iloc[2:])
    assert pq.ParquetFile(tmp_path / "t.parquet").num_row_groups == 2
    back = read_table(tmp_path / "t.parquet", "sentences")
    pd.testing.assert_frame_equal(back, read_table(write_table(frame, tmp_path / "w.parquet", "sentences"), "sentences"))
    assert back.attrs["glode"]["note"] == "x"
    assert [s.tokens for s in read_sentences(tmp_path / "t.parquet")] == [s.tokens for s in SENTS]


def test_a_failed_row_group_write_leaves_no_table(tmp_path):
    from glode.tables import table_writer

    frame = sentences_frame(SENTS)
    with pytest.raises(ValueError, match="do not match the schema"):
        with table_writer(tmp_path / "t.parquet", "sentences", SCHEMAS['sentences']) as write:
            write(frame)
            write(frame.drop(columns=["line"]))
    assert list(tmp_path.iterdir()) == []


def test_skipped_columns_are_not_read(tmp_path):
    path = write_table(sentences_frame(SENTS), tmp_path / "s.parquet", "sentences")
    assert list(read_table(path, "sentences", skip=("tokens", "tags")).columns) == ["sentence_id", "spans", "line"]
