"""glode/atomic.py: outputs written to a hidden temporary sibling and renamed into place, so a
failed writer leaves the previous version and no temporaries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glode.atomic import atomic_dir, atomic_path, atomic_write_bytes


def _leftovers(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_atomic_write_bytes_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert _leftovers(target.parent) == []


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.name == f".f.txt.tmp-{os.getpid()}"
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible until the block ends
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    assert (target / "a.txt").read_text() == "v1"
    with pytest.raises(KeyError):
        with atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("v2")
            raise KeyError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert _leftovers(tmp_path) == []
