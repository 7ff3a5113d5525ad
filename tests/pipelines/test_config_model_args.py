"""The run config checks its model settings once and keeps them as one checked ModelArgs: the
object the training workers receive and build the model from."""

from __future__ import annotations

import pickle

import pytest

import deepsets.model_args as model_args_module
from deepsets.model_args import ModelArgs
from deepsets.pipelines.config import ModelConfig, TaskConfig, load_run_config
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
    return runs


def test_loading_checks_the_model_settings_once_and_keeps_them(tmp_path, rule_runs):
    cfg = load_run_config(write(tmp_path, FULL))
    assert len(rule_runs) == 1
    args = cfg.model_args()
    assert isinstance(args, ModelArgs) and (args.dim, args.task, args.num_outputs) == (64, "multilabel", 2)
    assert cfg.model_args() is args and len(rule_runs) == 1
    worker_copy = pickle.loads(pickle.dumps(cfg))  # what Ray sends a training worker
    assert worker_copy == cfg and worker_copy.model_args() == args and len(rule_runs) == 1


def test_a_copy_with_another_model_section_is_checked_again(tmp_path, rule_runs):
    cfg = load_run_config(write(tmp_path, MINIMAL))
    wider = cfg.model_copy(update={"model": ModelConfig(dim=256)})
    assert wider.model_args().dim == 256 and len(rule_runs) == 2
    with pytest.raises(ValueError, match=r"model.heads: must divide model.dim \(heads = 3, dim = 128\)"):
        cfg.model_copy(update={"model": ModelConfig(heads=3)}).model_args()


def test_every_model_setting_has_one_place_in_the_config():
    from dataclasses import fields

    assert set(MODEL_LOCATIONS) == {f.name for f in fields(ModelArgs)}
    assert MODEL_LOCATIONS["dim"] == "model.dim" and MODEL_LOCATIONS["task"] == "task.kind"
    assert MODEL_LOCATIONS["num_outputs"] == "task.num_outputs" and MODEL_LOCATIONS["shortcuts"] == "task.shortcuts"
    for field, where in MODEL_LOCATIONS.items():
        section, name = where.split(".")
        assert name in {"model": ModelConfig, "task": TaskConfig}[section].model_fields, field


def test_the_config_takes_each_lower_bound_from_the_model_settings():
    import annotated_types

    from deepsets.model_args import LEAST

    for field, least in LEAST.items():
        section, name = MODEL_LOCATIONS[field].split(".")
        declared = {"model": ModelConfig, "task": TaskConfig}[section].model_fields[name]
        assert [m.ge for m in declared.metadata if isinstance(m, annotated_types.Ge)] == [least], field
        with pytest.raises(ValueError, match=f"{field}: must be >= {least}"):
            ModelArgs(**{field: least - 1})
