"""glode/steps/check.py (the check node): the whole params.yaml checked, then a stamp whose bytes
do not depend on the values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from glode.params import ParamsError
from glode.steps.check import CHECK_STAMP, write_check_stamp
from tests.params_fixture import default_params_text, write_project

DEFAULT_TEXT = default_params_text()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A project folder with a params.yaml of the schema defaults and tiny input files where it expects them."""
    return write_project(tmp_path_factory.mktemp("proj"))


def test_check_stamp_does_not_depend_on_valid_values(root, tmp_path):
    """The check stage's output is the same for every valid file, so `dvc exp run -S k=500`
    reruns check but nothing that depends on its output."""
    for k in (300, 500):
        shutil.copytree(root, tmp_path / str(k))
        (tmp_path / str(k) / "params.yaml").write_text(DEFAULT_TEXT.replace("\nk: 300\n", f"\nk: {k}\n"))
        write_check_stamp(tmp_path / str(k) / "params.yaml", tmp_path / str(k) / "logs/check.txt")
    assert (tmp_path / "300/logs/check.txt").read_bytes() == (tmp_path / "500/logs/check.txt").read_bytes() == CHECK_STAMP.encode()
    (tmp_path / "300/params.yaml").write_text(DEFAULT_TEXT.replace("\nk: 300\n", "\nk: -1\n"))
    (tmp_path / "300/logs/check.txt").unlink()
    with pytest.raises(ParamsError, match="k: -1"):
        write_check_stamp(tmp_path / "300/params.yaml", tmp_path / "300/logs/check.txt")
    assert not (tmp_path / "300/logs").exists() or not any((tmp_path / "300/logs").iterdir())
