"""`glode preset`: named params.yaml values (the views on, the paper's progressive mode, plain) applied as a text edit."""

from __future__ import annotations

import re

import pytest
import yaml

from glode.params import DEFAULTS, ParamsError, check_params
from glode.presets import PRESETS, apply_preset
from glode.rounds import DEFAULT_ROUNDS
from tests.params_fixture import default_params_text


@pytest.fixture()
def project(tmp_path):
    """A params.yaml of the schema defaults, generated (tests/params_fixture.py): the working
    tree's may hold a user's `dvc exp run -S k=500` (issue 39)."""
    (tmp_path / "params.yaml").write_text(default_params_text(comments=True), encoding="utf-8")
    for f in ("data/en/train.txt", "data/en/dev.txt", "data/de/train.txt", "data/de/test.txt"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    return tmp_path


def _flat(params: dict) -> dict:
    return {f"{s}.{k}" if isinstance(sub, dict) else s: v
            for s, sub in params.items() for k, v in (sub.items() if isinstance(sub, dict) else [(None, sub)])}


def test_paper_preset_sets_every_value_and_default_restores_the_file_byte_for_byte(project):
    params = project / "params.yaml"
    before = params.read_bytes()
    changed = apply_preset(params, "paper")
    parsed = yaml.safe_load(params.read_text())
    flat = _flat(parsed)
    for key, value in PRESETS["paper"].values.items():
        assert flat[key] == value, key
    assert "rounds" in changed and list(parsed["rounds"]) == ["r1", "r2", "r3", "r4", "r5"]
    assert set(parsed["models"]) == {"r0", "r1", "r2", "r3", "r4", "r5"}  # the &rounds anchor still feeds `models`
    assert flat["retrain.schedule-rounds"] == len(parsed["rounds"])  # one optimiser run over the whole chain
    assert check_params(parsed, project) == []
    assert re.search(r"\n  m-start: 0\.9125 +# denoise\.m-start\n", params.read_text())  # comments stay
    apply_preset(params, "default")
    assert params.read_bytes() == before
    assert apply_preset(params, "default") == []


def test_plain_preset_turns_the_views_off_keeps_the_rounds_and_glode_or_default_restores(project):
    """`glode preset plain`: the views off, fresh predictions as labels; a user's longer chain
    stays (the preset sets no rounds); `glode` turns the views on again (the default) without
    touching the rounds, and `default` does so and restores the default chain."""
    from glode.rounds import rounds_text

    params = project / "params.yaml"
    assert DEFAULTS["denoise.use-global"] is True and DEFAULTS["denoise.use-local"] is True
    params.write_text(rounds_text(params.read_text(), 2))
    before = params.read_bytes()
    assert apply_preset(params, "glode") == []  # the views are the default already
    changed = apply_preset(params, "plain")
    parsed = yaml.safe_load(params.read_text())
    flat = _flat(parsed)
    assert sorted(changed) == ["denoise.use-global", "denoise.use-local"]  # start is model already
    assert flat["denoise.use-global"] is False and flat["denoise.use-local"] is False
    assert flat["denoise.start"] == "model" and list(parsed["rounds"]) == ["r1", "r2"]
    assert check_params(parsed, project) == []
    assert re.search(r"\n  use-global: false +# denoise\.use-global\n", params.read_text())  # comments stay
    assert sorted(apply_preset(params, "glode")) == ["denoise.use-global", "denoise.use-local"]
    assert params.read_bytes() == before  # glode is the defaults' views and leaves the chain
    apply_preset(params, "plain")
    apply_preset(params, "default")
    assert yaml.safe_load(params.read_text())["denoise"]["use-global"] is True
    assert list(yaml.safe_load(params.read_text())["rounds"]) == ["r1"]  # default's own chain
    assert before != params.read_bytes()


def test_default_preset_holds_the_schema_defaults():
    default = PRESETS["default"]
    named = (PRESETS[name].values for name in ("glode", "paper", "plain"))
    assert default.rounds == DEFAULT_ROUNDS and set(default.values) == set().union(*named)
    assert all(DEFAULTS[k] == v for k, v in default.values.items())


def test_a_preset_that_cannot_be_applied_leaves_the_file_untouched(project):
    params = project / "params.yaml"
    original = params.read_text()
    text = original.replace("  gate: agree", "  gate: agree\n  gate: none", 1)  # an ambiguous key
    params.write_text(text)
    with pytest.raises(Exception, match="denoise.gate"):
        apply_preset(params, "paper")
    assert params.read_text() == text
    params.write_text(original.replace("max-span-len: 4", "max-span-len: 0"))  # a bad value elsewhere
    with pytest.raises(ParamsError, match="model.max-span-len"):
        apply_preset(params, "paper")
    assert "max-span-len: 0" in params.read_text() and "init: encoder" in params.read_text()
