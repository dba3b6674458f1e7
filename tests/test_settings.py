"""glode/settings.py: one typed settings object per concern, each field the one declaration of a
params.yaml key (default, check, help), from which the schema (glode/params.py) and every stage's
options (glode/stagecli.py) are made, so that no default or help is written twice."""

from __future__ import annotations

import enum
import runpy
from pathlib import Path
from typing import Annotated

import pytest
import typer

from glode.errors import ParamError
from glode.params import DEFAULTS, SCHEMA, ParamsError
from glode.settings import (SETTINGS, DataSettings, DenoiseSettings, ModelSettings, RetrainSettings, TrainSettings,
                            param)
from glode.stagecli import single_command, with_settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_key_is_declared_by_one_field_whose_default_and_help_the_schema_has():
    keys = [p.key for cls in SETTINGS for p in cls.params().values()]
    assert len(keys) == len(set(keys)) and set(keys) == set(SCHEMA)
    for cls in SETTINGS:
        made = cls()
        for name, p in cls.params().items():
            assert getattr(made, name) == DEFAULTS[p.key] and SCHEMA[p.key] is p, (cls.__name__, name)
            assert p.help.strip(), (cls.__name__, name)


def test_a_key_is_the_section_and_the_field_name_unless_declared_otherwise():
    keys = {name: p.key for name, p in DenoiseSettings.params().items()}
    assert keys["o_keep_rate"] == "denoise.o-keep-rate" and keys["k"] == "k"
    assert RetrainSettings.params()["epochs"].option == "retrain_epochs"


def test_a_bad_value_is_named_by_its_params_key():
    with pytest.raises(ParamError, match=r"parameter 'denoise.local-cap': 1.5 is not allowed; expected a number in \(0, 1\]"):
        DenoiseSettings(local_cap=1.5)
    with pytest.raises(ParamError, match="parameter 'train.head-lr'"):
        TrainSettings.from_options({"head_lr": 0.0, "epochs": 2, "unrelated": object()})
    with pytest.raises(ParamsError, match="2 bad parameters"):
        ModelSettings(max_span_len=0, max_seq_len=2)
    with pytest.raises(ParamError, match="data.ignore-labels"):
        DataSettings(labels=["PER"], ignore_labels=["PER"])


def test_options_become_plain_values_and_absent_options_keep_the_default():
    choice = enum.Enum("Choice", [("random", "random"), ("chain", "chain")], type=str)
    s = DenoiseSettings.from_options({"projection": choice.random, "dim": 16, "round": "r1"})
    assert (s.projection, type(s.projection), s.dim, s.k) == ("random", str, 16, DEFAULTS["k"])
    r = RetrainSettings.from_options({"init": choice.chain, "retrain_epochs": 0.5, "epochs": 3})
    assert (r.init, r.epochs) == ("chain", 0.5)


def test_retrain_epochs_replace_train_epochs_and_a_whole_number_stays_an_int():
    train = TrainSettings(epochs=3)
    assert RetrainSettings(epochs=0).train_settings(train) is train
    assert RetrainSettings(epochs=1.0).train_settings(train).epochs == 1
    assert type(RetrainSettings(epochs=1.0).train_settings(train).epochs) is int
    assert RetrainSettings(epochs=0.5).train_settings(train).epochs == 0.5 and train.epochs == 3
    assert "eval_batch_size" not in train.recorded() and train.recorded()["epochs"] == 3


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


def test_a_key_declared_twice_or_an_option_named_twice_is_refused():
    from dataclasses import dataclass

    from glode.settings import Settings, schema

    @dataclass
    class Twice(Settings):
        seed: int = param(0, help="a second train.seed", key="train.seed")

    with pytest.raises(TypeError, match="train.seed is declared twice"):
        schema((TrainSettings, Twice))
    with pytest.raises(TypeError, match="--seed"):
        @with_settings
        def main(*, train: TrainSettings, denoise: DenoiseSettings) -> None:
            pass
