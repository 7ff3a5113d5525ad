"""Run config TOML texts (a minimal and a full one, an inline schema) and the helpers that write
them and capture the ConfigError a bad one raises, for the config tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deepsets.pipelines.config import load_run_config
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
