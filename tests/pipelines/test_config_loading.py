"""The run config TOML: valid files load to typed sections, paths resolve, overrides of every
value type apply, and a missing or broken file is named."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime

import pytest

from deepsets.model_args import ModelArgs
from deepsets.pipelines.config import (
    DataConfig,
    ScalingConfig,
    TaskConfig,
    TrackingConfig,
    TrainingConfig,
    load_run_config,
    parse_run_config,
)
from tests.pipelines.config_files import FULL, MINIMAL, config_error, write

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
        ("image", "dense"),
        ("history", "id_sequence"),
        ("country", "categorical"),
        ("profile", "numeric"),
    ]
    assert cfg.model == ModelArgs(
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
    assert cfg.task == TaskConfig()
    assert cfg.training == TrainingConfig(
        epochs=7,
        batch_size=300,
        optimizer="sgd",
        lr=0.05,
        weight_decay=0.0,
        schedule="linear",
        warmup_steps=100,
        seed=42,
        grad_clip=0.0,
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
    assert cfg.model == ModelArgs(
        dim=128,
        layers=1,
        heads=4,
        ff_dim=0,
        pooling="mean",
        fusion="transformer",
        fusion_layers=2,
        fusion_pooling="mean",
        dropout=0.0,
        modality_dropout=0.0,
        task="binary",
        num_outputs=1,
    )
    assert cfg.task == TaskConfig()
    assert cfg.training == TrainingConfig(
        epochs=3,
        batch_size=512,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.01,
        schedule="cosine",
        warmup_steps=0,
        seed=0,
        grad_clip=1.0,
    )
    assert cfg.scaling == ScalingConfig(workers=2, use_gpu=False, cpus_per_worker=1, max_failures=0)
    assert cfg.tracking == TrackingConfig(
        mlflow_uri="", experiment="deepsets", run_name="", storage_path=str(tmp_path / "ray_results")
    )
    assert cfg.tracking.resolved_mlflow_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    assert (
        cfg.tracking.resolved_run_name(datetime(2025, 1, 2, 3, 4, 5), suffix="0a1b2c") == "run-20250102-030405-0a1b2c"
    )
    assert cfg.model_args().ff_dim == 0 and cfg.model_args().feed_forward_dim == 4 * 128  # 0 means 4 * dim


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


# --- files -------------------------------------------------------------------------------


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, '[data]\ntrain = "t/"\nlabel_columns = ["y" "z"]\n')
    err = config_error(path)
    assert len(err.problems) == 1
    assert err.problems[0].startswith("TOML syntax error: ")
    assert "line 3" in err.problems[0]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    err = config_error(path)
    assert str(err) == f"{path}: cannot read config file: No such file or directory"
