"""glode/settings.py: one typed settings object per concern, each field the one declaration of a
params.yaml key (default, check, help), from which the schema (glode/params.py) and every stage's
options are made, so that no default or help is written twice (the options themselves:
test_stagecli.py)."""

from __future__ import annotations

import enum

import pytest

from glode.errors import ParamError
from glode.params import DEFAULTS, SCHEMA, ParamsError
from glode.settings import (SETTINGS, DataSettings, DenoiseSettings, ModelSettings, RetrainSettings, TrainSettings,
                            param)
from glode.stagecli import with_settings


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
