"""The run config's model settings are one ModelArgs: read from [model] and the model's part of
[task], its rules run once, and it is the object the training workers receive and build the
model from."""

from __future__ import annotations

import pickle

import annotated_types
import pytest

import deepsets.model_args as model_args_module
from deepsets.model_args import LEAST, ModelArgs, ModelArgsError
from deepsets.pipelines.config import load_run_config, section_fields
from deepsets.pipelines.config.checks import MODEL_LOCATIONS
from tests.pipelines.config_files import FULL, MINIMAL, write


@pytest.fixture
def rule_runs(monkeypatch):
    """How many times the model rules ran (each call checks every rule once)."""
    runs = []
    real = model_args_module.model_problems

    def counted(*args, **kwargs):
        runs.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(model_args_module, "model_problems", counted)
    monkeypatch.setattr("deepsets.pipelines.config.checks.model_problems", counted)
    return runs


def test_loading_checks_the_model_settings_once_and_keeps_them(tmp_path, rule_runs):
    cfg = load_run_config(write(tmp_path, FULL))
    assert len(rule_runs) == 1
    args = cfg.model_args()
    assert isinstance(args, ModelArgs) and args is cfg.model
    assert (args.dim, args.task, args.num_outputs) == (64, "multilabel", 2)
    worker_copy = pickle.loads(pickle.dumps(cfg))  # what Ray sends a training worker
    assert worker_copy == cfg and worker_copy.model_args() == args and len(rule_runs) == 1


def test_a_copy_with_other_model_settings_is_checked_when_they_are_made(tmp_path, rule_runs):
    cfg = load_run_config(write(tmp_path, MINIMAL))
    wider = cfg.model_copy(update={"model": cfg.model.replace(dim=256)})
    assert wider.model_args().dim == 256 and len(rule_runs) == 2
    with pytest.raises(ModelArgsError, match=r"heads: must divide dim \(heads = 3, dim = 128\)"):
        cfg.model.replace(heads=3)


def test_every_model_setting_has_one_place_in_the_config():
    assert set(MODEL_LOCATIONS) == set(ModelArgs.model_fields)
    assert MODEL_LOCATIONS["dim"] == "model.dim" and MODEL_LOCATIONS["task"] == "task.kind"
    assert MODEL_LOCATIONS["num_outputs"] == "task.num_outputs" and MODEL_LOCATIONS["shortcuts"] == "task.shortcuts"
    for field, where in MODEL_LOCATIONS.items():
        section, name = where.split(".")
        assert section_fields(section)[name] is ModelArgs.model_fields[field], field
    assert set(section_fields("model")) | {"kind"} | set(section_fields("task")) >= {
        n.split(".")[1] for n in MODEL_LOCATIONS.values()
    }


def test_each_lower_bound_is_declared_once_on_the_model_settings():
    for field, least in LEAST.items():
        declared = ModelArgs.model_fields[field]
        assert [m.ge for m in declared.metadata if isinstance(m, annotated_types.Ge)] == [least], field
        with pytest.raises(ModelArgsError, match=f"{field}: Input should be greater than or equal to {least}"):
            ModelArgs(**{field: least - 1})


def test_a_model_setting_written_in_the_wrong_section_is_named(tmp_path):
    from deepsets.pipelines.errors import ConfigError

    text = MINIMAL + '\n[model]\nkind = "regression"\n'
    with pytest.raises(ConfigError, match=r"model.kind: unknown field"):
        load_run_config(write(tmp_path, text))
