"""glode/stagecli.py: every stage's options made from the settings declarations (glode/settings.py:
defaults, help, choices; none declared by hand), handed to the stage as built settings."""

from __future__ import annotations

import enum
import runpy
from pathlib import Path
from typing import Annotated

import pytest
import typer

from glode.errors import ParamError
from glode.params import DEFAULTS, SCHEMA
from glode.settings import ModelSettings, TrainSettings
from glode.stagecli import single_command, with_settings

ROOT = Path(__file__).resolve().parents[1]


STAGES = ["stages/prepare.py", "stages/encoder.py", "stages/train_source.py", "stages/train_target.py",
          "stages/initial_labels.py", "stages/pseudo_label.py", "stages/denoise.py", "stages/evaluate.py"]


DECLARED_OPTIONS = {p.option for p in SCHEMA.values()}


@pytest.mark.parametrize("script", STAGES)
def test_stage_options_are_the_declarations(script):
    """A stage's options that DVC fills from params.yaml are made from the declarations: their
    defaults (but data.labels, which must come from params.yaml: none), help and choices; and
    the stage declares none of them by hand."""
    g = runpy.run_path(str(ROOT / script))
    command = typer.main.get_command(single_command(g["main"]))
    options = {p.name: p for p in command.params}
    keys = g["main"].param_keys
    assert keys, script
    for option, key in keys.items():
        p, declared = options[option], SCHEMA[key]
        want = [] if key == "data.labels" else DEFAULTS[key]
        got = getattr(p.default, "value", p.default)
        assert (list(got) if isinstance(got, (list, tuple)) else got) == want, (script, option)
        assert p.help == declared.help, (script, option)
        kind = p.type_descriptor.annotation  # (typer 0.29: the type the option converts to)
        choices = [m.value for m in kind] if isinstance(kind, type) and issubclass(kind, enum.Enum) else []
        assert choices == list(declared.choices or ()), (script, option)
    by_hand = {name for name in options if name not in keys} & DECLARED_OPTIONS
    assert not by_hand, f"{script} declares params options by hand: {sorted(by_hand)}"


def test_with_settings_hands_the_stage_built_settings_and_names_a_bad_value_by_its_key():
    seen = {}

    @with_settings
    def main(out: Annotated[str, typer.Option()], *, model: ModelSettings, train: TrainSettings) -> None:
        seen.update(out=out, model=model, train=train)

    command = typer.main.get_command(single_command(main))
    command.main(["--out", "o", "--max-span-len", "6", "--char-languages", "ja", "--char-languages", "zh",
                  "--no-freeze-word-embeddings"], standalone_mode=False)
    assert seen["out"] == "o" and seen["model"] == ModelSettings(max_span_len=6, char_languages=["ja", "zh"])
    assert seen["train"] == TrainSettings(freeze_word_embeddings=False)
    assert main.param_keys["max_span_len"] == "model.max-span-len" and "out" not in main.param_keys
    with pytest.raises(ParamError, match="parameter 'model.max-span-len': 0 is not allowed"):
        command.main(["--out", "o", "--max-span-len", "0"], standalone_mode=False)
