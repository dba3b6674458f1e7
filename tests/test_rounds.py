"""glode/rounds.py: the rounds chain (validation, each round's predecessor) and `glode rounds N`,
which rewrites the chain and keeps the rest of params.yaml."""

from __future__ import annotations

import pytest
import yaml

from glode.errors import ParamError
from glode.rounds import MAX_ROUNDS, check_prev, rewrite_rounds, validate_rounds
from tests.params_fixture import default_params_text

DEFAULT_TEXT = default_params_text()


def test_round_chain_refuses_later_unknown_self_and_missing_predecessors():
    assert validate_rounds({"r1": {"prev": "r0"}, "r2": {"prev": "r1"}, "r3": {"prev": "r1"}}) == ["r1", "r2", "r3"]
    with pytest.raises(ParamError, match="defined later"):
        validate_rounds({"r1": {"prev": "r2"}, "r2": {"prev": "r0"}})
    with pytest.raises(ParamError, match="not a round"):
        validate_rounds({"r1": {"prev": "r7"}})
    with pytest.raises(ParamError, match="itself"):
        validate_rounds({"r1": {"prev": "r1"}})
    with pytest.raises(ParamError, match="needs a 'prev'"):
        validate_rounds({"r1": {}})
    check_prev("r2", "r1")
    check_prev("r2", "r0")
    for bad in ("r2", "r3", "x", "source"):
        with pytest.raises(ParamError, match=r"rounds\.r2\.prev"):
            check_prev("r2", bad)


def test_rewrite_rounds_keeps_the_rest_of_the_file(tmp_path):
    text = "# top comment\nk: 300\nrounds: &rounds\n  r1: {prev: r0}\n\nmodels:\n  r0: {prev: source}\n  <<: *rounds\n\ntrain:\n  epochs: 1  # keep me\n"
    path = tmp_path / "params.yaml"
    path.write_text(text)
    rewrite_rounds(path, 3)
    data = yaml.safe_load(path.read_text())
    assert data["rounds"] == {"r1": {"prev": "r0"}, "r2": {"prev": "r1"}, "r3": {"prev": "r2"}}
    assert set(data["models"]) == {"r0", "r1", "r2", "r3"}
    assert "# keep me" in path.read_text() and path.read_text().startswith("# top comment\nk: 300\n")
    rewrite_rounds(path, 0)
    assert yaml.safe_load(path.read_text())["rounds"] == {}
    rewrite_rounds(path, 1)
    assert path.read_text() == text


def test_glode_rounds_refuses_absurd_lengths(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(DEFAULT_TEXT, encoding="utf-8")
    before = params.read_bytes()
    with pytest.raises(ParamError, match=f"between 0 and {MAX_ROUNDS}, got 1000000"):
        rewrite_rounds(params, 1_000_000)
    assert params.read_bytes() == before
    assert len(rewrite_rounds(params, MAX_ROUNDS)) == MAX_ROUNDS
    with pytest.raises(ParamError, match=f"at most {MAX_ROUNDS} rounds"):
        check_prev(f"r{MAX_ROUNDS + 1}", f"r{MAX_ROUNDS}")
