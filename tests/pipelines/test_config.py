"""The run config TOML: valid files load to typed sections, overrides apply, and every problem is
reported at once, one line each, starting with its dotted location (``training.lr: ...``)."""

from __future__ import annotations

import json
import textwrap
import tomllib
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from deepsets.choices import FUSIONS, SET_POOLINGS, TASKS
from deepsets.features.errors import SchemaError
from deepsets.features.schema import FeatureSchema
from deepsets.pipelines import config as C
from deepsets.pipelines.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    ScalingConfig,
    SchemaConfig,
    TaskConfig,
    TrackingConfig,
    TrainingConfig,
    load_run_config,
    parse_run_config,
)
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.errors import ConfigError

MINIMAL = """
[data]
train = "data/train/"
label_columns = ["clicked"]

[schema]
path = "data/schema.toml"
"""

FULL = """
[data]
train = ["data/train/", "more/*.parquet"]
valid = "data/valid/"
label_columns = ["clicked", "bought"]
spec = "spec.json"

[schema]
id_column = "item_id"

[[schema.modality]]
name = "image"
kind = "dense"
dim = 8

[[schema.modality]]
name = "history"
kind = "id_sequence"
max_len = 20
max_size = 1000

[[schema.modality]]
name = "country"
kind = "categorical"

[[schema.modality]]
name = "profile"
kind = "numeric"
columns = ["age", "income"]

[model]
dim = 64
layers = 2
heads = 8
ff_dim = 96
pooling = "attention"
fusion = "deepset"
fusion_layers = 3
fusion_pooling = "median"
dropout = 0.1
modality_dropout = 0.25

[task]
kind = "multilabel"
num_outputs = 2

[training]
epochs = 7
batch_size = 300
optimizer = "sgd"
lr = 0.05
weight_decay = 0.0
schedule = "linear"
warmup_steps = 100
seed = 42
grad_clip = 0.0

[scaling]
workers = 3
use_gpu = true
cpus_per_worker = 2.5
max_failures = 2

[tracking]
mlflow_uri = "http://mlflow:5000"
experiment = "ads"
run_name = "try-1"
storage_path = "/tmp/ray_results"
"""

SCHEMA_TOML = """
[[modality]]
name = "image"
kind = "dense"
dim = 4
"""


def write(directory: Path, text: str, name: str = "run.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_run_config(path, overrides)
    err = info.value
    assert err.source == str(path)
    assert "\n" not in str(err), "a config error must print as one line"
    return err


def with_lines(text: str, section: str, *lines: str) -> str:
    """MINIMAL with ``lines`` added under ``[section]`` (appended as a new table if absent)."""
    body = "\n".join(lines)
    if f"[{section}]\n" in text:
        return text.replace(f"[{section}]\n", f"[{section}]\n{body}\n", 1)
    return f"{text}\n[{section}]\n{body}\n"


# --- valid configs -----------------------------------------------------------------------


def test_full_config_loads_every_field(tmp_path):
    cfg = load_run_config(write(tmp_path, FULL))
    d = str(tmp_path)
    assert cfg.data == DataConfig(
        train=(f"{d}/data/train", f"{d}/more/*.parquet"),
        valid=(f"{d}/data/valid",),
        label_columns=("clicked", "bought"),
        spec=f"{d}/spec.json",
    )
    assert cfg.schema_.path is None and cfg.schema_.id_column == "item_id"
    assert [(m.name, m.kind) for m in cfg.schema_.modality] == [
        ("image", "dense"), ("history", "id_sequence"), ("country", "categorical"), ("profile", "numeric")
    ]
    assert cfg.model == ModelConfig(
        dim=64, layers=2, heads=8, ff_dim=96, pooling="attention", fusion="deepset", fusion_layers=3,
        fusion_pooling="median", dropout=0.1, modality_dropout=0.25,
    )
    assert cfg.task == TaskConfig(kind="multilabel", num_outputs=2)
    assert cfg.training == TrainingConfig(
        epochs=7, batch_size=300, optimizer="sgd", lr=0.05, weight_decay=0.0, schedule="linear",
        warmup_steps=100, seed=42, grad_clip=0.0,
    )
    assert cfg.scaling == ScalingConfig(workers=3, use_gpu=True, cpus_per_worker=2.5, max_failures=2)
    assert cfg.tracking == TrackingConfig(
        mlflow_uri="http://mlflow:5000", experiment="ads", run_name="try-1", storage_path="/tmp/ray_results"
    )


@pytest.mark.parametrize("text", [MINIMAL, FULL], ids=["minimal", "full"])
def test_config_round_trips_through_dict_json_and_toml(tmp_path, text):
    cfg = load_run_config(write(tmp_path, text))
    assert parse_run_config(cfg.as_dict(), "saved") == cfg
    assert parse_run_config(json.loads(cfg.to_json()), "saved.json") == cfg
    saved = write(tmp_path / "elsewhere", cfg.to_toml(), "config.toml")
    assert tomllib.loads(saved.read_text()) == cfg.as_dict()
    assert load_run_config(saved) == cfg  # absolute paths: the file's new directory does not matter


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_run_config(write(tmp_path / "conf", MINIMAL))
    assert cfg.data.valid is None and cfg.data.spec is None
    assert cfg.model == ModelConfig(
        dim=128, layers=1, heads=4, ff_dim=0, pooling="mean", fusion="transformer", fusion_layers=2,
        fusion_pooling="mean", dropout=0.0, modality_dropout=0.0,
    )
    assert cfg.task == TaskConfig(kind="binary", num_outputs=1)
    assert cfg.training == TrainingConfig(
        epochs=3, batch_size=512, optimizer="adamw", lr=1e-3, weight_decay=0.01, schedule="cosine",
        warmup_steps=0, seed=0, grad_clip=1.0,
    )
    assert cfg.scaling == ScalingConfig(workers=2, use_gpu=False, cpus_per_worker=1, max_failures=0)
    assert cfg.tracking == TrackingConfig(
        mlflow_uri="", experiment="deepsets", run_name="", storage_path=str(tmp_path / "ray_results")
    )
    assert cfg.tracking.resolved_mlflow_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    assert cfg.tracking.resolved_run_name(datetime(2025, 1, 2, 3, 4, 5), suffix="0a1b2c") == "run-20250102-030405-0a1b2c"
    assert cfg.model_args().ff_dim is None  # 0 means 4 * dim, decided by the builder


def test_relative_paths_resolve_against_the_config_directory(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    text = """
    [data]
    train = ["train/", "more/part-*.parquet", "/abs/data/", "s3://bucket/train/"]
    valid = "../shared/valid"
    label_columns = ["clicked"]
    spec = "fitted/spec.json"

    [schema]
    path = "schema.toml"

    [tracking]
    storage_path = "checkpoints"
    """
    cfg = load_run_config(write(tmp_path / "conf", text))
    conf = tmp_path / "conf"
    assert cfg.data.train == (f"{conf}/train", f"{conf}/more/part-*.parquet", "/abs/data", "s3://bucket/train/")
    assert cfg.data.valid == (f"{tmp_path}/shared/valid",)
    assert cfg.data.spec == f"{conf}/fitted/spec.json"
    assert cfg.schema_.path == f"{conf}/schema.toml"
    assert cfg.tracking.storage_path == f"{work}/checkpoints"  # the working directory, not the config's


def test_relative_override_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_run_config(write(tmp_path / "conf", MINIMAL), ["data.train=other/", "schema.path=s.toml"])
    assert cfg.data.train == (f"{tmp_path}/other",)
    assert cfg.schema_.path == f"{tmp_path}/s.toml"


def test_parse_run_config_resolves_paths_only_against_base_dir(tmp_path):
    raw = tomllib.loads(MINIMAL)
    assert parse_run_config(raw).data.train == ("data/train/",)
    assert parse_run_config(raw, base_dir=tmp_path).data.train == (f"{tmp_path}/data/train",)
    assert raw["data"]["train"] == "data/train/", "the caller's dict is not modified"


# --- overrides ---------------------------------------------------------------------------


def test_overrides_of_every_value_type(tmp_path):
    cfg = load_run_config(
        write(tmp_path, MINIMAL),
        [
            "training.epochs=10",  # int
            "training.lr=0.01",  # float
            "training.weight_decay=0",  # an int for a float field
            "scaling.use_gpu=true",  # bool
            'data.label_columns=["a", "b"]',  # list
            "model.fusion=deepset",  # bare string
            'tracking.experiment="quoted name"',  # quoted string
            "tracking.run_name=2024-01-02",  # would be a TOML date: kept as text
            "tracking.mlflow_uri=http://host:5000",
            " model.dim = 64 ",  # spaces around key and value
        ],
    )
    assert cfg.training.epochs == 10 and cfg.training.lr == 0.01 and cfg.training.weight_decay == 0.0
    assert cfg.scaling.use_gpu is True
    assert cfg.data.label_columns == ("a", "b")
    assert cfg.model.fusion == "deepset" and cfg.model.dim == 64
    assert cfg.tracking.experiment == "quoted name"
    assert cfg.tracking.run_name == "2024-01-02"
    assert cfg.tracking.mlflow_uri == "http://host:5000"


def test_a_number_given_for_a_string_field_stays_text(tmp_path):
    cfg = load_run_config(write(tmp_path, MINIMAL), ["tracking.experiment=2024", "tracking.run_name=12"])
    assert cfg.tracking.experiment == "2024" and cfg.tracking.run_name == "12"


def test_override_of_a_list_of_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_run_config(write(tmp_path / "conf", MINIMAL), ['data.train=["a", "/b"]'])
    assert cfg.data.train == (f"{tmp_path}/a", "/b")


def test_later_override_wins(tmp_path):
    cfg = load_run_config(write(tmp_path, MINIMAL), ["model.dim=32", "model.dim=256"])
    assert cfg.model.dim == 256


def test_unknown_override_keys_are_reported_with_the_others(tmp_path):
    path = write(tmp_path, MINIMAL)
    err = config_error(path, ["training.lrr=0.1"])
    assert str(err) == f"{path}: training.lrr: unknown field (did you mean 'lr'?) (from --set training.lrr=0.1)"

    err = config_error(path, ["trainig.lr=0.1", "model.dim=0", "nodot=3", "model.dim"])
    assert err.problems == [
        "nodot: cannot apply --set 'nodot=3' (expected section.field=value)",
        "model.dim: cannot apply --set 'model.dim' (expected section.field=value)",
        "trainig: unknown section (did you mean 'training'?) (from --set trainig.lr=0.1)",
        "model.dim: Input should be greater than or equal to 1 (found 0) (from --set model.dim=0)",
    ]


def test_override_with_a_wrong_type(tmp_path):
    path = write(tmp_path, MINIMAL)
    err = config_error(path, ["training.epochs=2.5", "scaling.use_gpu=yes"])
    assert err.problems == [
        "training.epochs: Input should be a valid integer (found 2.5) (from --set training.epochs=2.5)",
        "scaling.use_gpu: Input should be a valid boolean (found 'yes') (from --set scaling.use_gpu=yes)",
    ]


# --- bad configs: one line naming the field ------------------------------------------------


@pytest.mark.parametrize(
    "section, line, problem",
    [
        ("training", "lr = -1", "training.lr: Input should be greater than 0 (found -1)"),
        (
            "model",
            'fusion = "set"',
            "model.fusion: Input should be 'deepset', 'attention', 'transformer', 'concat', 'tmm_deepset' "
            "or 'mmt' (found 'set')",
        ),
        ("model", "heads = 3", "model.heads: must divide model.dim (heads = 3, dim = 128)"),
        ("model", "dropout = 1.0", "model.dropout: Input should be less than 1 (found 1.0)"),
        ("training", "epochs = true", "training.epochs: Input should be a valid integer (found True)"),
        ("training", "lr = nan", "training.lr: Input should be a finite number (found nan)"),
        ("training", "optimiser = \"sgd\"", "training.optimiser: unknown field (did you mean 'optimizer'?)"),
        ("scaling", "gpus = 1", "scaling.gpus: unknown field (expected one of workers, use_gpu, cpus_per_worker, max_failures)"),
        ("task", "num_outputs = 3", "task.num_outputs: a binary task has exactly 1 output (found 3)"),
        ("data", "label_columns = []", "data.label_columns: a binary task needs at least one label column"),
        ("data", 'label_columns = ["a", "a"]', "data.label_columns: columns listed twice: ['a']"),
        ("tracking", 'run_name = "a/b"', "tracking.run_name: may hold only letters, digits, '_', '-' and '.' (it names a directory) (found 'a/b')"),
    ],
)
def test_one_bad_field_gives_one_line_naming_it(tmp_path, section, line, problem):
    text = MINIMAL.replace('label_columns = ["clicked"]\n', "") if line.startswith("label_columns") else MINIMAL
    path = write(tmp_path, with_lines(text, section, line))
    err = config_error(path)
    assert err.problems == [problem]
    assert str(err) == f"{path}: {problem}"


def test_several_problems_are_reported_at_once(tmp_path):
    text = """
    [data]
    label_columns = "clicked"

    [schema]
    path = "schema.toml"

    [model]
    dim = 100
    heads = 8
    fusion = "tmm_deepset"
    fusion_pooling = "median"

    [task]
    kind = "multiclass"
    num_outputs = 1

    [training]
    lr = -1
    batch_size = 100

    [scaling]
    workers = 3

    [tracking]
    experiment = ""

    [extra]
    x = 1
    """
    path = write(tmp_path, text)
    err = config_error(path)
    assert err.problems == [
        "extra: unknown section (expected one of data, schema, model, task, training, scaling, tracking)",
        "data.train: Field required",
        "data.label_columns: Input should be a list (found 'clicked')",
        "training.lr: Input should be greater than 0 (found -1)",
        "tracking.experiment: String should have at least 1 character (found '')",
        "model.heads: must divide model.dim (heads = 8, dim = 100)",
        "model.fusion_pooling: fusion 'tmm_deepset' supports sum, mean, max (found 'median')",
        "task.num_outputs: a multiclass task needs at least 2 classes (found 1)",
        "training.batch_size: must be divisible by scaling.workers (batch_size = 100, workers = 3; "
        "the global batch is split evenly across workers)",
    ]
    assert str(err).startswith(f"{path}: 9 problems: extra: unknown section")


def test_cross_checks_run_beside_a_bad_field_in_the_same_section(tmp_path):
    text = with_lines(MINIMAL, "model", "heads = 3", 'pooling = "sum"')
    err = config_error(write(tmp_path, text))
    assert err.problems == [
        "model.pooling: Input should be 'mean', 'max' or 'attention' (found 'sum')",
        "model.heads: must divide model.dim (heads = 3, dim = 128)",
    ]


def test_heads_need_not_divide_dim_when_nothing_attends(tmp_path):
    text = with_lines(MINIMAL, "model", "heads = 3", "layers = 0", 'fusion = "deepset"')
    assert load_run_config(write(tmp_path, text)).model.heads == 3
    text = with_lines(MINIMAL, "model", "heads = 3", "layers = 0", 'fusion = "mmt"')
    assert config_error(write(tmp_path, text)).problems == ["model.heads: must divide model.dim (heads = 3, dim = 128)"]


def test_batch_size_must_split_evenly_over_workers(tmp_path):
    path = write(tmp_path, with_lines(MINIMAL, "scaling", "workers = 3"))
    err = config_error(path)
    assert str(err) == (
        f"{path}: training.batch_size: must be divisible by scaling.workers (batch_size = 512, workers = 3; "
        "the global batch is split evenly across workers)"
    )
    assert load_run_config(path, ["training.batch_size=513"]).training.batch_size == 513


def test_a_section_that_is_not_a_table(tmp_path):
    path = write(tmp_path, "model = 3\n" + MINIMAL)
    assert config_error(path).problems == ["model: must be a table [model] (found 3)"]


def test_missing_required_sections(tmp_path):
    path = write(tmp_path, "[model]\ndim = 8\n")
    assert config_error(path).problems == [
        "data.train: Field required",  # label_columns is checked against task.kind once [data] is valid
        'schema: give either path = "schema.toml" or inline [[schema.modality]] tables',
    ]


# --- the schema section ------------------------------------------------------------------


def test_schema_given_both_as_path_and_inline(tmp_path):
    text = MINIMAL + '\n[[schema.modality]]\nname = "image"\nkind = "dense"\ndim = 4\n'
    path = write(tmp_path, text)
    assert str(config_error(path)) == (
        f'{path}: schema: give either path = "schema.toml" or inline id_column / [[schema.modality]] tables, not both'
    )


def test_inline_schema_problems_are_prefixed_with_schema(tmp_path):
    text = """
    [data]
    train = "t/"
    label_columns = ["y"]

    [schema]
    id_column = "item_id"
    colour = 1

    [[schema.modality]]
    name = "image"
    kind = "dense"
    dim = 0

    [[schema.modality]]
    name = "tags"
    kind = "id_bag"

    [[schema.modality]]
    name = "image"
    kind = "categorical"
    """
    err = config_error(write(tmp_path, text))
    assert err.problems == [
        "schema.colour: unknown field (expected one of path, id_column, modality)",
        "schema.modality name 'image' is declared 2 times (names must be unique)",
        "schema.modality[0] (image).dim: Input should be greater than 0 (found 0)",
        "schema.modality[1] (tags).kind: unknown kind 'id_bag' (expected one of categorical, dense, "
        "dense_sequence, id_sequence, id_set, numeric)",
    ]


def test_inline_schema_needs_modalities(tmp_path):
    text = MINIMAL.replace('path = "data/schema.toml"', 'id_column = "item_id"')
    assert config_error(write(tmp_path, text)).problems == ["schema.modality: Field required"]


def test_feature_schema_from_path_and_inline(tmp_path):
    write(tmp_path / "data", SCHEMA_TOML, "schema.toml")
    from_path = load_run_config(write(tmp_path, MINIMAL)).feature_schema()
    assert isinstance(from_path, FeatureSchema) and from_path.names == ["image"]
    inline = load_run_config(write(tmp_path, FULL)).feature_schema()
    assert inline.id_column == "item_id"
    assert inline.names == ["country", "history", "image", "profile"]


def test_feature_schema_reports_a_missing_schema_file(tmp_path):
    cfg = load_run_config(write(tmp_path, MINIMAL))
    with pytest.raises(SchemaError) as info:
        cfg.feature_schema()
    assert str(info.value) == f"{tmp_path}/data/schema.toml: cannot read schema file: No such file or directory"


# --- files -------------------------------------------------------------------------------


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "[data]\ntrain = \"t/\"\nlabel_columns = [\"y\" \"z\"]\n")
    err = config_error(path)
    assert len(err.problems) == 1
    assert err.problems[0].startswith("TOML syntax error: ")
    assert "line 3" in err.problems[0]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    err = config_error(path)
    assert str(err) == f"{path}: cannot read config file: No such file or directory"


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
    assert args == ModelArgs(dim=64, layers=2, heads=8, ff_dim=96, pooling="attention", fusion="deepset", fusion_layers=3,
                             fusion_pooling="median", dropout=0.1, modality_dropout=0.25, task="multilabel", num_outputs=2)
    assert ModelArgs.from_dict(json.loads(json.dumps(args.to_dict()))) == args
    model = build_model([ModalityInfo("image", "dense", dim=8), ModalityInfo("history", "id_sequence", num_embeddings=10)], args)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_choices_are_the_model_library_lists():
    import typing

    from deepsets.choices import OPTIMIZERS, SCHEDULES, SEQUENCE_POOLINGS

    for section, field, choices in ((ModelConfig, "fusion", FUSIONS), (ModelConfig, "pooling", SEQUENCE_POOLINGS),
                                    (ModelConfig, "fusion_pooling", SET_POOLINGS), (TaskConfig, "kind", TASKS),
                                    (TrainingConfig, "optimizer", OPTIMIZERS), (TrainingConfig, "schedule", SCHEDULES)):
        assert typing.get_args(section.model_fields[field].annotation) == choices, (section, field)


def test_direct_construction_runs_the_cross_checks():
    data, schema = DataConfig(train="t", label_columns=["y"]), SchemaConfig(path="s.toml")
    with pytest.raises(ValidationError, match=r"model.heads: must divide model.dim \(heads = 3, dim = 128\)"):
        RunConfig(data=data, schema=schema, model=ModelConfig(heads=3))
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
    assert (cfg.task.kind, cfg.task.num_outputs) == ("binary", 1)
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
    kind = draw(st.sampled_from(TASKS))
    task = {"kind": kind, "num_outputs": 1 if kind in ("binary", "listwise", "pairwise") else draw(st.integers(2, 5))}
    if kind == "two_tower":
        task.update(query_modalities=["q"], item_modalities=draw(st.lists(_text.filter(lambda t: t != "q"), min_size=1, max_size=3, unique=True)))
    return {
        "data": {
            "train": draw(st.one_of(_text, st.lists(_text, min_size=1, max_size=3))),
            "label_columns": [] if kind == "two_tower" else draw(st.lists(_text, min_size=1, max_size=1 if kind in ("listwise", "pairwise") else 3, unique=True)),
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
            "fusion": draw(st.sampled_from([f for f in FUSIONS if f not in ("tmm_deepset", "mmt" if kind == "two_tower" else "")])),
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
        "tracking": {"experiment": draw(_text), "run_name": draw(st.from_regex(r"[A-Za-z0-9_\-]{0,10}", fullmatch=True))},
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_configs())
def test_flat_params_keys_are_unique_and_values_are_scalars(raw):
    cfg = parse_run_config(raw, "generated")
    params = cfg.flat_params()
    fields = [f"{s}.{k}" for s, cls in C.SECTIONS.items() for k in cls.model_fields if (s, k) != ("schema", "modality")]
    expected = fields + (["schema.modalities"] if cfg.schema_.modality is not None else [])
    assert sorted(params) == sorted(expected), "one key per field: nothing overwritten, nothing lost"
    for key, value in params.items():
        assert type(value) in (str, int, float, bool), (key, value)
    # and the whole config survives its saved form
    assert parse_run_config(cfg.as_dict(), "saved") == cfg
    assert parse_run_config(tomllib.loads(cfg.to_toml()), "saved.toml") == cfg


@pytest.mark.parametrize(
    "task,data,problem",
    [
        ('kind = "listwise"', "", "data.group_column: a listwise task ranks rows within query groups"),
        ('kind = "pairwise"\nnum_outputs = 2', 'group_column = "query_id"', "task.num_outputs: a pairwise task has exactly 1 output (found 2)"),
        ('kind = "binary"', 'group_column = "query_id"', "data.group_column: is used only by listwise / pairwise tasks"),
        ('kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]', "", "data.item_column: a two_tower task needs the integer item id column"),
        ('kind = "two_tower"\nquery_modalities = ["history"]', 'item_column = "item_id"', "task.item_modalities: a two_tower task needs both"),
        ('kind = "two_tower"\nquery_modalities = ["image"]\nitem_modalities = ["image"]', 'item_column = "item_id"', "task.item_modalities: a modality belongs to one tower, found in both: ['image']"),
        ('kind = "binary"\nquery_modalities = ["image"]', "", "task.query_modalities: query_modalities / item_modalities are used only by two_tower"),
        ('kind = "binary"', 'item_column = "item_id"', "data.item_column: is used only by two_tower tasks"),
        ('kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]\nshortcuts = [["image", "history"]]', 'item_column = "item_id"',
         "task.shortcuts: each pair is [query modality, item modality]: ['image', 'history'] must pair one of ['history'] with one of ['image']"),
        ('kind = "binary"\nshortcuts = [["history", "image"]]', "", "task.shortcuts: shortcuts are used only by two_tower"),
        ('kind = "listwise"', 'group_column = "query_id"\nlabel_columns = ["a", "b"]', "data.label_columns: a listwise task ranks by one relevance column"),
        ('kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]', 'item_column = "item_id"\nlabel_columns = ["clicked"]', "data.label_columns: a two_tower task learns from (query, item) rows and reads no labels"),
    ],
)
def test_ranking_task_problems_are_named(tmp_path, task, data, problem):
    no_labels = "two_tower" in task or "label_columns" in data
    text = with_lines(MINIMAL.replace('label_columns = ["clicked"]\n', "") if no_labels else MINIMAL, "task", task)
    if data:
        text = with_lines(text, "data", data)
    err = config_error(write(tmp_path, text))
    assert len(err.problems) == 1 and err.problems[0].startswith(problem), err.problems


def test_two_tower_config_reaches_the_builder(tmp_path):
    text = with_lines(with_lines(MINIMAL.replace('label_columns = ["clicked"]\n', ""), "task", 'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]\ntemperature = 0.1\nshortcuts = [["history", "image"]]'),
                      "data", 'item_column = "item_id"')
    cfg = C.load_run_config(write(tmp_path, text))
    args = cfg.model_args()
    assert args.task == "two_tower" and args.query_modalities == ("history",) and args.item_modalities == ("image",)
    assert args.temperature == 0.1 and args.to_dict()["query_modalities"] == ["history"]
    assert args.shortcuts == (("history", "image"),) and args.to_dict()["shortcuts"] == [["history", "image"]]
    assert "query_modalities" not in C.load_run_config(write(tmp_path, MINIMAL)).model_args().to_dict()  # older checkpoints still resume


@pytest.mark.parametrize("valid, training, problem", [
    (True, 'select = "valid_ndcg_at_10"', "training.select: a binary run reports valid_loss, valid_auc, valid_log_loss (or \"last\"; found 'valid_ndcg_at_10')"),
    (True, 'select = "last"\npatience = 2', 'training.patience: patience needs a metric to watch: set select to a validation metric, not "last"'),
    (False, "patience = 2", "training.patience: selecting an epoch on a validation metric (select, patience) needs data.valid"),
    (False, 'select = "valid_auc"', "training.select: selecting an epoch on a validation metric (select, patience) needs data.valid"),
])
def test_epoch_selection_problems_are_named(tmp_path, valid, training, problem):
    text = with_lines(MINIMAL, "data", 'valid = "data/valid/"') if valid else MINIMAL
    err = config_error(write(tmp_path, with_lines(text, "training", training)))
    assert err.problems == [problem]


def test_epoch_selection_defaults_per_task(tmp_path):
    from deepsets.pipelines.training.selection import Selection

    cfg = load_run_config(write(tmp_path, with_lines(MINIMAL, "data", 'valid = "data/valid/"')))
    assert (cfg.training.select, cfg.training.patience) == ("", 0)
    assert Selection.of("", 0, "binary", 10, True) == Selection("valid_auc", 0)
    assert Selection.of("", 0, "binary", 10, False) == Selection(None, 0)  # no validation data: the last epoch
    assert Selection.of("", 3, "listwise", 5, True) == Selection("valid_ndcg_at_5", 3)
    assert Selection.of("last", 0, "regression", 10, True).metric is None
    rmse = Selection.of("", 0, "regression", 10, True)
    assert rmse.metric == "valid_rmse" and rmse.score({"valid_rmse": 2.0}) == -2.0 and not rmse.higher_is_better
    assert Selection("valid_auc").score({"valid_auc": float("nan")}) == float("-inf")  # a one-class set ranks lowest


@pytest.mark.parametrize("task, data, problem", [
    ('kind = "binary"\nnegatives = "mixed"', 'items = "items.parquet"', "task.negatives: is used only by two_tower tasks (task.kind = 'binary')"),
    ('kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]\nnegatives = "catalogue"', 'item_column = "item_id"',
     "data.items: catalogue negatives come from the item table: give data.items"),
    ('kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]', 'item_column = "item_id"\nitems = "items.parquet"',
     "data.items: the item table is used only by mixed or catalogue negatives (task.negatives)"),
])
def test_negatives_problems_are_named(tmp_path, task, data, problem):
    text = with_lines(MINIMAL.replace('label_columns = ["clicked"]\n', "") if "two_tower" in task else MINIMAL, "task", task)
    err = config_error(write(tmp_path, with_lines(text, "data", data)))
    assert len(err.problems) == 1 and err.problems[0].startswith(problem), err.problems


def test_the_item_table_path_resolves_like_the_data(tmp_path):
    text = with_lines(with_lines(MINIMAL.replace('label_columns = ["clicked"]\n', ""), "task",
                                 'kind = "two_tower"\nquery_modalities = ["history"]\nitem_modalities = ["image"]\nnegatives = "mixed"'),
                      "data", 'item_column = "item_id"\nitems = "items.parquet"')
    cfg = load_run_config(write(tmp_path, text))
    assert cfg.data.items == (f"{tmp_path}/items.parquet",) and cfg.task.num_negatives == 1024 and cfg.task.refresh_steps == 1
