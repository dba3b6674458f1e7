"""Protocol x38 (bench/results_x38.py): the bf16-trained r0 against v4's fp32-trained r0 of the same
target and seed, as rendered from fake cells: both differences (bf16-scored and both fp32-scored),
pending where a cell or the fp32 scoring is missing, and a refusal when the pair's commits differ."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.bench_modules import load

X38, V4 = load("results_x38"), load("results_v4")


def cell(lang: str, seed: int, f1: float, commit: str = "c" * 40) -> dict:
    return {"language": lang, "variant": "zeroshot", "seed": seed, "commit": commit, "rounds": {"r0": {"f1": f1}}}


@pytest.fixture
def fp32_cells(monkeypatch, tmp_path):
    """v4's cells in a tmp dir (the fp32 pairs) and an empty scoring-precision file path."""
    v4 = dataclasses.replace(V4.PROTOCOL, cells=tmp_path / "cells-v4")
    v4.cells.mkdir()
    monkeypatch.setattr(X38, "V4_PROTOCOL", v4)
    monkeypatch.setattr(X38, "SCORING_PRECISION", tmp_path / "scoring_precision_x38.json")

    def write(*cells: dict) -> None:
        for c in cells:
            (v4.cells / f"{c['language']}-zeroshot-s{c['seed']}.json").write_text(json.dumps(c))
    return write


def test_both_differences_per_seed_and_their_means(fp32_cells, tmp_path):
    fp32_cells(cell("de", 0, 0.58), cell("de", 1, 0.56), cell("ar", 0, 0.46))
    ours = {("de", "zeroshot", 0): cell("de", 0, 0.575), ("de", "zeroshot", 1): cell("de", 1, 0.563)}
    (tmp_path / "scoring_precision_x38.json").write_text(json.dumps({"cells": [
        {"project": "../bench-work/x38/de-s0", "round": "r0", "scores": {"fp32": {"f1": 0.576}}}]}))
    text = X38.render_x38(ours, X38.PROTOCOL)
    assert "| de | 0 | 58.00 | 57.50 | 57.60 | -0.50 | -0.40 |" in text
    assert "| de | 1 | 56.00 | 56.30 | pending | +0.30 | pending |" in text
    assert "| ar | 0 | 46.00 | pending | pending | pending | pending |" in text
    assert "- de: bf16 − fp32 (bf16 scored bf16) over 2 of 3 seeds: mean -0.10, per seed -0.50, +0.30" in text
    assert "- de: bf16 − fp32 (both scored fp32) over 1 of 3 seeds: mean -0.40, per seed -0.40" in text
    assert "- ar: bf16 − fp32 (both scored fp32) over 0 of 3 seeds: pending" in text


def test_a_pair_from_two_commits_is_refused(fp32_cells):
    fp32_cells(cell("de", 0, 0.58, commit="a" * 40))
    with pytest.raises(ValueError, match="not a side-by-side pair"):
        X38.render_x38({("de", "zeroshot", 0): cell("de", 0, 0.57, commit="b" * 40)}, X38.PROTOCOL)
