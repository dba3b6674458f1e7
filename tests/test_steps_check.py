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


def test_check_refuses_more_training_processes_than_gpus_naming_the_key(root, tmp_path, monkeypatch):
    """``train.processes: 2`` with ``train.device: cuda`` on a machine with one GPU (torch's
    answers replaced) stops the check stage, before anything trains; on the CPU it passes."""
    import torch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    shutil.copytree(root, tmp_path / "p")
    params = tmp_path / "p/params.yaml"
    train = DEFAULT_TEXT.index("\ntrain:\n")
    for device, fails in (("cuda", True), ("cpu", False)):
        text = DEFAULT_TEXT[:train] + DEFAULT_TEXT[train:].replace("  processes: 1\n", "  processes: 2\n", 1)
        params.write_text(text.replace("  device: auto\n", f"  device: {device}\n", 1))
        if fails:
            with pytest.raises(ParamsError, match=r"train.processes: 2 processes on CUDA need a GPU each, and this "
                               r"machine has 1"):
                write_check_stamp(params, tmp_path / "p/logs/check.txt")
            assert not (tmp_path / "p/logs/check.txt").exists()
        else:
            write_check_stamp(params, tmp_path / "p/logs/check.txt")
