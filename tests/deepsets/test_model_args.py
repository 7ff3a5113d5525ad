"""ModelArgs holds only settings that pass its rules; each rule across fields is written once
(deepsets.model_args.MODEL_RULES) and names the fields as its caller does."""

from __future__ import annotations

import json
import pickle

import pytest
from pydantic import ValidationError

from deepsets.model_args import ModelArgs, ModelArgsError, model_problems

TWO_TOWER = dict(task="two_tower", query_modalities=("history",), item_modalities=("image",))


@pytest.mark.parametrize(
    "settings,problem",
    [
        (dict(heads=3), ("heads", "must divide dim (heads = 3, dim = 128)")),
        (dict(fusion="tmm_deepset", fusion_pooling="median"), ("fusion_pooling", "fusion 'tmm_deepset' supports sum, mean, max (found 'median')")),
        (dict(task="binary", num_outputs=2), ("num_outputs", "a binary task has exactly 1 output (found 2)")),
        (dict(task="multiclass", num_outputs=1), ("num_outputs", "a multiclass task needs at least 2 classes (found 1)")),
        (dict(task="two_tower"), ("query_modalities", "a two_tower task needs both query_modalities and item_modalities")),
        ({**TWO_TOWER, "item_modalities": ("image", "history")}, ("item_modalities", "a modality belongs to one tower, found in both: ['history']")),
        ({**TWO_TOWER, "fusion": "mmt"}, ("fusion", "two_tower towers are set-fusion models: the mmt baseline cannot be a tower")),
        ({**TWO_TOWER, "shortcuts": (("image", "history"),)}, ("shortcuts", "each pair is [query modality, item modality]: ['image', 'history'] must pair one of ['history'] with one of ['image']")),
        (dict(query_modalities=("history",)), ("query_modalities", "query_modalities / item_modalities are used only by two_tower (task = 'binary')")),
        (dict(shortcuts=(("a", "b"),)), ("shortcuts", "shortcuts are used only by two_tower (task = 'binary')")),
    ],
)  # fmt: skip
def test_each_rule_refuses_by_field(settings, problem):
    with pytest.raises(ModelArgsError) as caught:
        ModelArgs(**settings)
    assert caught.value.problems == [problem]
    assert str(caught.value) == f"model arguments: {problem[0]}: {problem[1]}"
    assert isinstance(caught.value, ValueError)


def test_heads_need_not_divide_dim_where_nothing_attends():
    assert ModelArgs(dim=30, heads=4, layers=0, fusion="deepset").heads == 4
    with pytest.raises(ModelArgsError, match="heads: must divide dim"):
        ModelArgs(dim=30, heads=4, layers=1, fusion="deepset")  # the summarizers attend


def test_a_caller_names_the_fields_its_own_way():
    def location(field):
        return {"dim": "model.dim", "heads": "model.heads", "task": "task.kind"}.get(field, f"task.{field}")

    settings = {**dict(ModelArgs()), "heads": 3, "query_modalities": ("a",)}
    assert model_problems(settings, location) == [
        (
            "task.query_modalities",
            "query_modalities / item_modalities are used only by two_tower (task.kind = 'binary')",
        ),
        ("model.heads", "must divide model.dim (heads = 3, dim = 128)"),
    ]
    # a rule runs only when every field it needs is given (the caller leaves out invalid ones)
    assert model_problems({"heads": 3}, location) == []
    assert model_problems({"heads": 3, "dim": 128}, location) == [
        ("model.heads", "must divide model.dim (heads = 3, dim = 128)")
    ]
    # a run config checks each field first and runs the rules itself, once
    unchecked = ModelArgs.check_fields({"heads": 3})
    assert unchecked.heads == 3
    with pytest.raises(ValidationError):
        ModelArgs.check_fields({"heads": 0})


def test_fields_invalid_on_their_own_are_reported_before_any_rule():
    with pytest.raises(ModelArgsError) as caught:
        ModelArgs(fusion="nothing", heads=3, ff_dim=-1)
    assert sorted(where for where, _ in caught.value.problems) == ["ff_dim", "fusion"]


def test_the_checked_settings_travel_without_being_checked_again(monkeypatch):
    args = ModelArgs(dim=64, heads=8, **TWO_TOWER, shortcuts=[["history", "image"]])
    calls = []
    monkeypatch.setattr("deepsets.model_args.model_problems", lambda *a: calls.append(a) or [])
    assert pickle.loads(pickle.dumps(args)) == args and calls == []  # a Ray worker's copy
    error = pickle.loads(pickle.dumps(ModelArgsError([("dim", "must be >= 1 (found 0)")])))
    assert error.problems == [("dim", "must be >= 1 (found 0)")] and str(error).endswith("dim: must be >= 1 (found 0)")


def test_saved_settings_of_earlier_versions_still_load():
    saved = {  # a model_config.json as checkpoints and logged models wrote it before ff_dim 0 meant 4 * dim
        "dim": 32, "layers": 1, "heads": 4, "ff_dim": None, "pooling": "mean", "fusion": "transformer",
        "fusion_layers": 2, "fusion_pooling": "mean", "dropout": 0.0, "modality_dropout": 0.0,
        "task": "binary", "num_outputs": 1,
    }  # fmt: skip
    args = ModelArgs.from_dict(saved)
    assert args == ModelArgs(dim=32) and args.feed_forward_dim == 128
    assert ModelArgs.from_dict(json.loads(json.dumps(args.to_dict()))) == args
    with pytest.raises(ValueError, match=r"unknown \['names'\]"):
        ModelArgs.from_dict({**saved, "names": None})
