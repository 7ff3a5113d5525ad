"""The run config's views for the pipeline (flat params, model args, the choices, the demo's
config) and properties of any valid config; loading and overrides: test_config_loading.py,
problems reported: test_config_errors.py; ranking, two-tower, epoch-selection and
negatives settings: test_config_ranking.py."""

from __future__ import annotations

import json
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from deepsets.choices import SET_POOLINGS
from deepsets.fusion_heads import fusion_names
from deepsets.model_args import ModelArgs
from deepsets.pipelines import config as C
from deepsets.pipelines.config import (
    DataConfig,
    RunConfig,
    SchemaConfig,
    TaskConfig,
    TrainingConfig,
    load_run_config,
    parse_run_config,
    section_fields,
)
from deepsets.pipelines.demo import default_demo_config
from deepsets.task_kinds import task_names
from tests.pipelines.config_files import FULL, MINIMAL, write

# --- views for the pipeline --------------------------------------------------------------


def test_flat_params(tmp_path):
    params = load_run_config(write(tmp_path, FULL)).flat_params()
    assert params["data.train"] == f"{tmp_path}/data/train,{tmp_path}/more/*.parquet"
    assert params["data.label_columns"] == "clicked,bought"
    assert params["schema.path"] == ""
    assert params["schema.id_column"] == "item_id"
    assert params["schema.modalities"] == "country:categorical,history:id_sequence,image:dense,profile:numeric"
    assert params["model.dim"] == 64 and params["training.lr"] == 0.05 and params["scaling.use_gpu"] is True
    assert "schema.modality" not in params


def test_model_args_carry_the_model_and_task_sections(tmp_path):
    from deepsets.builders import build_model
    from deepsets.modality import ModalityInfo
    from deepsets.model_args import ModelArgs

    cfg = load_run_config(write(tmp_path, FULL))
    args = cfg.model_args()
    assert args == ModelArgs(
        dim=64,
        layers=2,
        heads=8,
        ff_dim=96,
        pooling="attention",
        fusion="deepset",
        fusion_layers=3,
        fusion_pooling="median",
        dropout=0.1,
        modality_dropout=0.25,
        task="multilabel",
        num_outputs=2,
    )
    assert ModelArgs.from_dict(json.loads(json.dumps(args.to_dict()))) == args
    model = build_model(
        [ModalityInfo("image", "dense", dim=8), ModalityInfo("history", "id_sequence", num_embeddings=10)], args
    )
    assert sum(p.numel() for p in model.parameters()) > 0


def test_each_model_setting_is_declared_once_with_one_default_and_ff_dim_one_meaning():
    defaults = ModelArgs()
    # [model] and the model's part of [task] are fields of ModelArgs itself, not copies of them
    assert all(section_fields("model")[n] is ModelArgs.model_fields[n] for n in section_fields("model"))
    assert section_fields("task")["kind"] is ModelArgs.model_fields["task"]
    assert not set(TaskConfig.model_fields) & set(ModelArgs.model_fields)
    cfg = C.parse_run_config({"data": {"train": "t", "label_columns": ["y"]}, "schema": {"path": "s.toml"}})
    assert cfg.model_args() is cfg.model and cfg.model == defaults
    # ff_dim 0 means 4 * dim in the config and the model's settings alike; earlier checkpoints saved None for it
    assert ModelArgs(dim=32).feed_forward_dim == 128 and ModelArgs(dim=32, ff_dim=48).feed_forward_dim == 48
    assert ModelArgs.from_dict({**defaults.to_dict(), "ff_dim": None}) == defaults
    with pytest.raises(ValueError, match=r"ff_dim: Input should be greater than or equal to 0 \(found -1\)"):
        ModelArgs(ff_dim=-1)


def test_choices_are_the_model_library_lists():
    import typing

    from deepsets.choices import OPTIMIZERS, SCHEDULES, SEQUENCE_POOLINGS

    for section, field, choices in (
        (ModelArgs, "pooling", SEQUENCE_POOLINGS),
        (ModelArgs, "fusion_pooling", SET_POOLINGS),
        (TrainingConfig, "optimizer", OPTIMIZERS),
        (TrainingConfig, "schedule", SCHEDULES),
    ):
        assert typing.get_args(section.model_fields[field].annotation) == choices, (section, field)
    # the registered heads and task kinds: every one is accepted, anything else refused listing them
    for field, names in (("fusion", fusion_names()), ("task", task_names())):
        assert [getattr(ModelArgs.check_fields({field: name}), field) for name in names] == list(names)
        with pytest.raises(ValueError, match=" or ".join([", ".join(repr(n) for n in names[:-1]), repr(names[-1])])):
            ModelArgs(**{field: "nothing"})
        assert ModelArgs.model_json_schema()["properties"][field]["enum"] == list(names)


def test_direct_construction_runs_the_cross_checks():
    data, schema = DataConfig(train="t", label_columns=["y"]), SchemaConfig(path="s.toml")
    with pytest.raises(ValidationError, match=r"heads: must divide dim \(heads = 3, dim = 128\)"):
        RunConfig(data=data, schema=schema, model={"heads": 3})
    with pytest.raises(ValidationError, match="training.batch_size: must be divisible by scaling.workers"):
        RunConfig(data=data, schema=schema, training=TrainingConfig(batch_size=3))
    # the model's part of [task] is the model's, given either way
    given = RunConfig(data=data, schema=schema, task={"kind": "regression", "k": 5})
    assert (given.model.task, given.task.k) == ("regression", 5)
    assert RunConfig(**given.as_dict()) == given
    with pytest.raises(ValidationError, match="not both"):
        SchemaConfig(path="s.toml", id_column="x")
    cfg = RunConfig(data=data, schema=schema)
    assert cfg.data.train == ("t",) and cfg.schema_.path == "s.toml"


def test_config_is_frozen(tmp_path):
    cfg = load_run_config(write(tmp_path, MINIMAL))
    with pytest.raises(ValidationError):
        cfg.training.lr = 1.0  # type: ignore[misc]


def test_default_demo_config(tmp_path):
    cfg = default_demo_config(str(tmp_path / "demo"))
    d = tmp_path / "demo"
    assert cfg.data == DataConfig(train=(f"{d}/train",), valid=(f"{d}/valid",), label_columns=("clicked",))
    assert cfg.schema_.path == f"{d}/schema.toml"
    assert (cfg.model.task, cfg.model.num_outputs) == ("binary", 1)
    assert (cfg.model.dim, cfg.model.layers, cfg.model.heads, cfg.model.fusion) == (64, 0, 4, "transformer")
    assert (cfg.training.epochs, cfg.training.batch_size, cfg.training.lr) == (3, 512, 2e-3)
    assert cfg.scaling.workers == 2
    assert default_demo_config(str(d), workers=3).training.batch_size == 510  # split evenly


# --- properties --------------------------------------------------------------------------

_modalities = st.lists(
    st.sampled_from(
        [
            {"name": "image", "kind": "dense", "dim": 8},
            {"name": "frames", "kind": "dense_sequence", "dim": 4, "max_len": 3},
            {"name": "history", "kind": "id_sequence", "max_len": 5, "truncate": "keep_first"},
            {"name": "tags", "kind": "id_set", "hash_buckets": 64},
            {"name": "country", "kind": "categorical", "column": "cc"},
            {"name": "profile", "kind": "numeric", "columns": ["a", "b"]},
        ]
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda m: m["name"],
)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def raw_configs(draw) -> dict:
    workers = draw(st.integers(1, 8))
    schema = (
        {"path": draw(_text)}
        if draw(st.booleans())
        else {"modality": draw(_modalities), **({"id_column": "item_id"} if draw(st.booleans()) else {})}
    )
    heads = draw(st.sampled_from([1, 2, 4]))
    kind = draw(st.sampled_from(task_names()))
    task = {"kind": kind, "num_outputs": 1 if kind in ("binary", "listwise", "pairwise") else draw(st.integers(2, 5))}
    if kind == "two_tower":
        task.update(
            query_modalities=["q"],
            item_modalities=draw(st.lists(_text.filter(lambda t: t != "q"), min_size=1, max_size=3, unique=True)),
        )
    return {
        "data": {
            "train": draw(st.one_of(_text, st.lists(_text, min_size=1, max_size=3))),
            "label_columns": []
            if kind == "two_tower"
            else draw(st.lists(_text, min_size=1, max_size=1 if kind in ("listwise", "pairwise") else 3, unique=True)),
            **({"group_column": draw(_text)} if kind in ("listwise", "pairwise") else {}),
            **({"item_column": draw(_text)} if kind == "two_tower" else {}),
            **({"valid": draw(_text)} if draw(st.booleans()) else {}),
            **({"spec": draw(_text)} if draw(st.booleans()) else {}),
        },
        "schema": schema,
        "model": {
            "dim": heads * draw(st.integers(1, 16)),
            "heads": heads,
            "layers": draw(st.integers(0, 3)),
            "fusion": draw(
                st.sampled_from(
                    [f for f in fusion_names() if f not in ("tmm_deepset", "mmt" if kind == "two_tower" else "")]
                )
            ),
            "fusion_pooling": draw(st.sampled_from(SET_POOLINGS)),
            "dropout": draw(st.floats(0, 0.99)),
        },
        "task": task,
        "training": {
            "batch_size": workers * draw(st.integers(1, 64)),
            "lr": draw(st.floats(1e-6, 1.0)),
            "seed": draw(st.integers(0, 2**32 - 1)),
        },
        "scaling": {"workers": workers, "use_gpu": draw(st.booleans()), "cpus_per_worker": draw(st.floats(0.5, 8))},
        "tracking": {
            "experiment": draw(_text),
            "run_name": draw(st.from_regex(r"[A-Za-z0-9_\-]{0,10}", fullmatch=True)),
        },
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_configs())
def test_flat_params_keys_are_unique_and_values_are_scalars(raw):
    cfg = parse_run_config(raw, "generated")
    params = cfg.flat_params()
    fields = [f"{s}.{k}" for s in C.SECTIONS for k in section_fields(s) if (s, k) != ("schema", "modality")]
    expected = fields + (["schema.modalities"] if cfg.schema_.modality is not None else [])
    assert sorted(params) == sorted(expected), "one key per field: nothing overwritten, nothing lost"
    for key, value in params.items():
        assert type(value) in (str, int, float, bool), (key, value)
    # and the whole config survives its saved form
    assert parse_run_config(cfg.as_dict(), "saved") == cfg
    assert parse_run_config(tomllib.loads(cfg.to_toml()), "saved.toml") == cfg
