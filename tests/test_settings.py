"""glode/settings.py: one typed settings object per concern, whose defaults and checks are the
params.yaml schema's (glode/params.py), so that no default is written twice."""

from __future__ import annotations

import runpy
from dataclasses import fields
from pathlib import Path

import pytest
import typer

from glode.errors import ParamError
from glode.params import DEFAULTS, SCHEMA, ParamsError
from glode.settings import (DataSettings, DenoiseSettings, DeviceSettings, EvaluateSettings, Init, ModelSettings,
                            Projection, RetrainSettings, TrainSettings, option_keys)
from glode.stagecli import single_command

ROOT = Path(__file__).resolve().parents[1]
CLASSES = (DataSettings, ModelSettings, TrainSettings, DeviceSettings, EvaluateSettings, DenoiseSettings, RetrainSettings)
# keys a stage takes as a plain option, not through a settings object
PLAIN = {"target", "data.source-train", "data.source-dev", "encoder.name"}


def test_every_key_has_one_field_whose_default_is_the_schemas():
    keys = [f.metadata["key"] for cls in CLASSES for f in fields(cls)]
    assert len(keys) == len(set(keys)) and set(keys) | PLAIN == set(SCHEMA)
    for cls in CLASSES:
        made = cls()
        for f in fields(cls):
            assert getattr(made, f.name) == DEFAULTS[f.metadata["key"]], (cls.__name__, f.name)


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
    s = DenoiseSettings.from_options({"projection": Projection.random, "dim": 16, "round": "r1"})
    assert (s.projection, type(s.projection), s.dim, s.k) == ("random", str, 16, DEFAULTS["k"])
    r = RetrainSettings.from_options({"init": Init.chain, "retrain_epochs": 0.5, "epochs": 3})
    assert (r.init, r.epochs) == ("chain", 0.5)
    assert option_keys(RetrainSettings) == {"init": "retrain.init", "retrain_epochs": "retrain.epochs",
                                            "target_loss": "retrain.target-loss", "harden_o": "retrain.harden-o",
                                            "schedule_rounds": "retrain.schedule-rounds"}


def test_retrain_epochs_replace_train_epochs_and_a_whole_number_stays_an_int():
    train = TrainSettings(epochs=3)
    assert RetrainSettings(epochs=0).train_settings(train) is train
    assert RetrainSettings(epochs=1.0).train_settings(train).epochs == 1
    assert type(RetrainSettings(epochs=1.0).train_settings(train).epochs) is int
    assert RetrainSettings(epochs=0.5).train_settings(train).epochs == 0.5 and train.epochs == 3
    assert "eval_batch_size" not in train.recorded() and train.recorded()["epochs"] == 3


STAGES = ["stages/prepare.py", "stages/encoder.py", "stages/train_source.py", "stages/train_target.py",
          "stages/initial_labels.py", "stages/pseudo_label.py", "stages/denoise.py", "stages/evaluate.py"]


@pytest.mark.parametrize("script", STAGES)
def test_stage_option_defaults_are_the_schemas(script):
    """A stage's options that DVC fills from params.yaml default to the schema's values (but
    data.labels, which must come from params.yaml: none)."""
    g = runpy.run_path(str(ROOT / script))
    command = typer.main.get_command(single_command(g["main"]))
    defaults = {p.name: p.default for p in command.params}
    for option, key in g["PARAMS"].items():
        want = [] if key == "data.labels" else DEFAULTS[key]
        got = defaults[option]
        got = getattr(got, "value", got)
        assert (list(got) if isinstance(got, (list, tuple)) else got) == want, (script, option)


def test_choices_are_the_schemas():
    assert [m.value for m in Projection] == list(SCHEMA["denoise.projection"].choices)
    assert [m.value for m in Init] == list(SCHEMA["retrain.init"].choices)
