"""glode/pseudo_folder.py: the span vectors written block by block, and span texts read by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glode.pseudo_folder import (SPANS_FILE, SPANS_KIND, array_writer, load_array, read_span_texts, read_spans, save_array,
                                 spans_schema, write_pseudo_manifest)
from glode.tables import table_writer


def test_an_array_written_in_blocks_loads_as_the_whole_array(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 3))
    with array_writer(tmp_path / "a.npy", 10, 3) as write:
        write(x[:4])
        write(x[4:])
    back = load_array(tmp_path / "a.npy")
    assert back.dtype == np.float16
    np.testing.assert_array_equal(back, x.astype(np.float16))
    save_array(tmp_path / "b.npy", x.astype(np.float16))
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


@pytest.mark.parametrize("blocks", [[4], [4, 4, 4]])
def test_too_few_or_too_many_rows_is_an_error_and_no_file(tmp_path, blocks):
    with pytest.raises(ValueError, match="rows|does not fit"):
        with array_writer(tmp_path / "a.npy", 10, 3) as write:
            for n in blocks:
                write(np.zeros((n, 3)))
    assert list(tmp_path.iterdir()) == []


def test_span_texts_of_some_rows_and_a_table_read_without_texts(tmp_path):
    classes = ["O", "PER"]
    frame = pd.DataFrame({"sentence_id": np.array([0, 0, 1], dtype=np.int64), "start": np.array([0, 1, 0], dtype=np.int32),
                          "end": np.array([1, 2, 2], dtype=np.int32), "text": ["Anna", "lebt", "Sankt Gallen"],
                          "O": np.float32([0.1, 0.9, 0.2]), "PER": np.float32([0.9, 0.1, 0.8]),
                          "label": ["PER", "O", "PER"], "kept": [True, False, True], "gold": [None, None, None]})
    with table_writer(tmp_path / SPANS_FILE, SPANS_KIND, spans_schema(classes), {"classes": classes}) as write:
        write(frame.iloc[:2])
        write(frame.iloc[2:])
    write_pseudo_manifest(tmp_path, classes)
    spans, got_classes = read_spans(tmp_path, text=False)
    assert got_classes == classes and "text" not in spans and len(spans) == 3
    assert read_span_texts(tmp_path, np.array([2, 0])) == ["Sankt Gallen", "Anna"]
    assert read_spans(tmp_path)[0].text.tolist() == frame.text.tolist()


def test_a_vector_file_reads_the_rows_the_array_has(tmp_path, monkeypatch):
    from glode.pseudo_folder import VectorFile

    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float16)
    save_array(tmp_path / "v.npy", x)
    vf = VectorFile(tmp_path / "v.npy")
    monkeypatch.setattr(VectorFile, "BLOCK", 7)  # row lists that span several blocks
    assert vf.shape == (50, 4) and len(vf) == 50 and vf.dtype == np.float16
    np.testing.assert_array_equal(vf[3:20], x[3:20])
    np.testing.assert_array_equal(vf[45:80], x[45:])
    assert vf[:0].shape == (0, 4)
    rows = np.array([49, 0, 7, 7, 13, 8])
    np.testing.assert_array_equal(vf[rows], x[rows])
    mask = np.zeros(50, dtype=bool)
    mask[[2, 30]] = True
    np.testing.assert_array_equal(vf[mask], x[mask])


def test_denoising_from_a_vector_file_equals_denoising_from_the_array(tmp_path):
    from glode.denoising.update import DenoiseInput, denoise
    from glode.pseudo_folder import VectorFile
    from glode.settings import DenoiseSettings, IndexOptions
    from tests.denoising_fixture import small_problem

    Q, Y, S, s_labels, _ = small_problem(n=300, m=100, seed=2)
    save_array(tmp_path / "q.npy", Q.astype(np.float16))
    settings = DenoiseSettings(use_global=True, use_local=True, k=10, o_keep_rate=0.5)
    on_disk = denoise(DenoiseInput(VectorFile(tmp_path / "q.npy"), Y, S, s_labels), settings, 0.8, IndexOptions(chunk_size=64))
    in_memory = denoise(DenoiseInput(Q.astype(np.float16), Y, S, s_labels), settings, 0.8, IndexOptions(chunk_size=64))
    np.testing.assert_array_equal(on_disk.Y_new, in_memory.Y_new)
    np.testing.assert_array_equal(on_disk.n, in_memory.n)
    np.testing.assert_array_equal(on_disk.g, in_memory.g)
