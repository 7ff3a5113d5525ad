"""The sections of a run config, one pydantic model each, and :class:`RunConfig`, the whole run."""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import datetime
from typing import Annotated, Any, Dict, Literal, Optional, Tuple, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from deepsets.choices import NEGATIVES, OPTIMIZERS, SCHEDULES
from deepsets.features.kinds.base import BaseFeature
from deepsets.features.schema import FeatureSchema, features_by_kind, load_schema, parse_schema
from deepsets.model_args import ModelArgs
from deepsets.pipelines.config.checks import FIELD_AT, MODEL_LOCATIONS, run_problems, schema_source_problem
from deepsets.pipelines.config.toml_text import dump_toml

Scalar = Union[str, int, float, bool]

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
_Text = Annotated[str, Field(min_length=1)]
_Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


def _paths(value: Any) -> Any:
    """A path or a list of paths -> a tuple of paths (other types are left for pydantic)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    if not isinstance(value, tuple):
        raise ValueError(f"must be a path or a list of paths (found {value!r})")
    return value


class DataConfig(BaseModel):
    """Where the rows are and which columns are labels."""

    model_config = _STRICT

    train: Tuple[_Text, ...] = Field(min_length=1, strict=False)  # a path or a list: files, directories or globs
    valid: Optional[Tuple[_Text, ...]] = Field(
        default=None, min_length=1, strict=False
    )  # validation metrics every epoch
    label_columns: Tuple[_Text, ...] = Field((), strict=False)  # required by every task kind but two_tower
    spec: Optional[_Text] = None  # reuse a fitted FeatureSpec (spec.json) instead of fitting
    group_column: Optional[_Text] = None  # listwise / pairwise: the integer query id of each row
    item_column: Optional[_Text] = None  # two_tower: the integer item id of each row
    items: Optional[Tuple[_Text, ...]] = Field(default=None, min_length=1, strict=False)  # two_tower: the item table

    _as_tuple = field_validator("train", "valid", "items", mode="before")(_paths)

    @field_validator("label_columns")
    @classmethod
    def _unique(cls, columns: Tuple[str, ...]) -> Tuple[str, ...]:
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise ValueError(f"columns listed twice: {dupes}")
        return columns


class SchemaConfig(BaseModel):
    """The feature schema: a TOML file (``path``) or the same tables inline, exactly one of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Optional[_Text] = None  # the schema TOML file; or give id_column and modality inline
    id_column: Optional[_Text] = None  # inline schema: the row id column
    modality: Optional[Tuple[SerializeAsAny[BaseFeature], ...]] = None  # inline tables (deepsets.features.schema)

    @field_validator("modality", mode="before")
    @classmethod
    def _by_kind(cls, entries: Any) -> Any:
        return features_by_kind(entries)

    @model_validator(mode="after")
    def _one_source(self) -> "SchemaConfig":
        problem = schema_source_problem(self.path is not None, self.id_column is not None or self.modality is not None)
        if problem:
            raise ValueError(problem)
        if self.modality is not None:
            parse_schema(self._inline_dict(), "schema")  # names unique, id column not read as a feature
        return self

    def _inline_dict(self) -> dict:
        out: dict = {"modality": [m.model_dump(mode="json", exclude_none=True) for m in self.modality or ()]}
        if self.id_column is not None:
            out["id_column"] = self.id_column
        return out


class TaskConfig(BaseModel):
    """How a task learns, besides what the model predicts: the ranking cutoff and, for
    two_tower, its negatives. What the model predicts (``kind``, ``num_outputs``, the towers) is
    written in ``[task]`` too, and read into the model's settings (:class:`deepsets.model_args.ModelArgs`)."""

    model_config = _STRICT

    logq: bool = True  # two_tower: correct in-batch negatives by item popularity
    k: int = Field(10, ge=1, le=100_000)  # ranking kinds: the cutoff of ndcg_at_k / recall_at_k
    negatives: Literal[NEGATIVES] = "in_batch"  # type: ignore[valid-type]  # two_tower: in_batch | mixed | catalogue
    num_negatives: int = Field(1024, ge=1, le=1_000_000)  # mixed: items drawn uniformly per step
    refresh_steps: int = Field(1, ge=1, le=1_000_000)  # catalogue: steps between recomputing item embeddings


class TrainingConfig(BaseModel):
    """The optimisation loop."""

    model_config = _STRICT

    epochs: int = Field(3, ge=1, le=100_000)  # passes over the training rows
    batch_size: int = Field(512, ge=1, le=1 << 24)  # the global batch, split evenly over scaling.workers
    optimizer: Literal[OPTIMIZERS] = "adamw"  # type: ignore[valid-type]  # the optimizer
    lr: float = Field(1e-3, gt=0.0, le=10.0)  # the peak learning rate
    weight_decay: float = Field(0.01, ge=0.0)  # decoupled for adamw, L2 for adam and sgd
    schedule: Literal[SCHEDULES] = "cosine"  # type: ignore[valid-type]  # the learning-rate schedule after warmup_steps
    warmup_steps: int = Field(0, ge=0)  # steps of linear warmup from 0 to lr
    seed: int = Field(0, ge=0, lt=2**32)  # weights, row order and modality dropout
    grad_clip: float = Field(1.0, ge=0.0)  # the largest gradient norm (0 = off)
    select: str = ""  # the validation metric the kept epoch is chosen on; "" = the task's default, "last" = no choice
    patience: int = Field(0, ge=0)  # stop after this many epochs without improvement of `select` (0 = never)


class ScalingConfig(BaseModel):
    """Ray Train workers."""

    model_config = _STRICT

    workers: int = Field(2, ge=1, le=4096)  # Ray Train workers (data parallel)
    use_gpu: bool = False  # one GPU per worker: batches and model on CUDA, bf16 autocast
    cpus_per_worker: float = Field(1.0, gt=0.0)  # CPUs (and torch threads) per worker
    max_failures: int = Field(0, ge=0)  # restarts from the last checkpoint after a worker failure (ray_train)
    trainer: Literal["auto", "ray_train", "in_process"] = (
        "auto"  # auto = in_process for 1 worker without --ray-address (no Ray start-up), else ray_train
    )


class TrackingConfig(BaseModel):
    """MLflow and Ray run bookkeeping."""

    model_config = _STRICT

    mlflow_uri: str = (
        ""  # "" = sqlite:///mlflow.db in the working directory (deepsets train: $MLFLOW_TRACKING_URI first)
    )
    experiment: _Text = "deepsets"  # the MLflow experiment
    run_name: str = (
        ""  # "" = run-<date>-<time>-<random hex>; also a directory under storage_path, the name --resume continues
    )
    storage_path: _Text = "ray_results"  # where Ray keeps checkpoints: a local folder or a URI (s3://bucket/prefix)
    artifact_location: str = ""  # where a new MLflow experiment keeps artifacts ("" = MLflow's default)
    parent_run_id: str = ""  # nest the MLflow run under this one (ablation retrains)

    @field_validator("run_name")
    @classmethod
    def _directory_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]*", name) or name in (".", ".."):
            raise ValueError("may hold only letters, digits, '_', '-' and '.' (it names a directory)")
        return name

    def resolved_mlflow_uri(self, cwd: Optional[str] = None) -> str:
        """``mlflow_uri``, or ``sqlite:///<cwd>/mlflow.db`` when it is empty (the command line
        fills an empty one from ``MLFLOW_TRACKING_URI`` first: :func:`deepsets.pipelines.commands.training.with_env_tracking_uri`)."""
        if self.mlflow_uri:
            return self.mlflow_uri
        return "sqlite:///" + os.path.join(os.path.abspath(cwd or os.getcwd()), "mlflow.db")

    def resolved_run_name(self, now: Optional[datetime] = None, suffix: Optional[str] = None) -> str:
        """``run_name``, or ``run-YYYYmmdd-HHMMSS-xxxxxx`` from ``now`` (default: the current
        time) and ``suffix`` (default: 6 random hex digits, so that two runs started in the same
        second get two names)."""
        if self.run_name:
            return self.run_name
        return f"{(now or datetime.now()).strftime('run-%Y%m%d-%H%M%S')}-{suffix or secrets.token_hex(3)}"


SECTIONS: Dict[str, type[BaseModel]] = {
    "data": DataConfig,
    "schema": SchemaConfig,
    "model": ModelArgs,
    "task": TaskConfig,
    "training": TrainingConfig,
    "scaling": ScalingConfig,
    "tracking": TrackingConfig,
}
REQUIRED_SECTIONS = ("data", "schema")
"""Each section's model; ``[model]`` and part of ``[task]`` are one :class:`ModelArgs`
(:func:`section_fields` lists what each section holds)."""


def section_fields(section: str) -> Dict[str, FieldInfo]:
    """``{name as written in the section: its field}``: ``[model]`` holds the :class:`ModelArgs`
    fields located there; ``[task]`` the rest of them (``task`` written ``kind``) and
    :class:`TaskConfig`'s own.

    Raises:
        KeyError: for a section that does not exist.
    """
    cls = SECTIONS[section]
    out = {} if section == "model" else dict(cls.model_fields)
    for field, where in MODEL_LOCATIONS.items():
        located, name = where.split(".")
        if located == section:
            out[name] = ModelArgs.model_fields[field]
    return out if section != "task" else {n: out[n] for n in sorted(out, key=lambda n: n in TaskConfig.model_fields)}


def move_model_fields(raw: Dict[str, Any]) -> Dict[str, Any]:
    """A config dict whose ``[task]`` model settings (``kind``, ``num_outputs``, the towers) are
    moved into its ``[model]`` table under their :class:`ModelArgs` names (a copy; other values
    are left for validation to judge)."""
    task = raw.get("task")
    if not isinstance(task, dict):
        return raw
    moved = {FIELD_AT[f"task.{k}"]: v for k, v in task.items() if f"task.{k}" in FIELD_AT}
    if not moved:
        return raw
    model = raw.get("model", {})
    if isinstance(model, ModelArgs):
        model = model.replace(**moved)
    elif isinstance(model, dict):
        model = {**model, **moved}
    rest = {k: v for k, v in task.items() if f"task.{k}" not in FIELD_AT}
    return {**raw, "model": model, "task": rest}


class RunConfig(BaseModel):
    """A whole training run. The ``[schema]`` section is the attribute ``schema_`` (pydantic's
    ``BaseModel.schema`` owns the plain name).

    ``model`` is the model's settings, :class:`deepsets.model_args.ModelArgs`: the ``[model]``
    section with the model's part of ``[task]`` (``task.kind`` is ``model.task``); it checked
    its own rules when it was made, and validating the config checks the fields across sections
    once. A pickled copy (a Ray worker's) is not checked again."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    data: DataConfig
    schema_: SchemaConfig = Field(alias="schema")
    model: ModelArgs = ModelArgs()
    task: TaskConfig = TaskConfig()
    training: TrainingConfig = TrainingConfig()
    scaling: ScalingConfig = ScalingConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="before")
    @classmethod
    def _task_settings_of_the_model(cls, data: Any) -> Any:
        return move_model_fields(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _cross_checks(self) -> "RunConfig":
        problems = run_problems(self._values(), model_rules=False)
        if problems:
            raise ValueError("; ".join(f"{loc}: {msg}" for loc, msg in problems))
        return self

    @classmethod
    def from_checked(cls, sections: Dict[str, BaseModel]) -> "RunConfig":
        """A config from sections that :func:`deepsets.pipelines.config.checks.run_problems` has
        already checked (``"model"``: the :class:`ModelArgs`): the checks do not run again.

        Args:
            sections: section name (``"schema"`` included) -> its validated section.
        """
        return cls.model_construct(**{attr(s): v for s, v in sections.items()})

    def sections(self) -> Dict[str, Dict[str, Any]]:
        """``{section: {field as written there: value}}``, the model settings in the sections
        they are written in (``task.kind`` in ``[task]``)."""
        out: Dict[str, Dict[str, Any]] = {}
        for section in SECTIONS:
            if section != "model":
                out[section] = dict(getattr(self, attr(section)).__dict__)
        out["model"] = {}
        for field, value in self.model:
            section, name = MODEL_LOCATIONS[field].split(".")
            out[section][name] = value
        out["task"] = {n: out["task"][n] for n in section_fields("task")}
        return {s: out[s] for s in SECTIONS}

    def _values(self) -> Dict[str, Any]:
        return {f"{s}.{k}": v for s, table in self.sections().items() for k, v in table.items()}

    # -- views ---------------------------------------------------------------------------

    def as_dict(self) -> dict:
        """JSON- and TOML-able nested dict; ``parse_run_config(cfg.as_dict(), ...) == cfg``."""
        dumped = self.model_dump(mode="json", exclude_none=True, by_alias=True)
        model = dumped.pop("model")
        out: Dict[str, Any] = {}
        for section in SECTIONS:
            if section == "model":
                out["model"] = {n: model[n] for n in section_fields("model")}
            elif section == "task":
                out["task"] = {
                    n: model[FIELD_AT[f"task.{n}"]] if f"task.{n}" in FIELD_AT else dumped["task"][n]
                    for n in section_fields("task")
                }
            else:
                out[section] = dumped[section]
        return out

    def to_toml(self) -> str:
        """The config as TOML text, which :func:`load_run_config` reads back to an equal config."""
        return dump_toml(self.as_dict())

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def flat_params(self) -> Dict[str, Scalar]:
        """``{"section.field": scalar}`` for MLflow params: lists joined with ",", unset optional
        values as "", an inline schema summarised as ``schema.modalities="name:kind,..."``."""
        out: Dict[str, Scalar] = {}
        for section, table in self.sections().items():
            for key, value in table.items():
                if section == "schema" and key == "modality":
                    continue
                if value is None:
                    value = ""
                elif isinstance(value, tuple):
                    value = ",".join(str(v) for v in value)
                out[f"{section}.{key}"] = value
        if self.schema_.modality is not None:
            out["schema.modalities"] = ",".join(
                f"{m.name}:{m.kind}" for m in sorted(self.schema_.modality, key=lambda m: m.name)
            )
        return out

    def feature_schema(self) -> FeatureSchema:
        """The feature schema: read from ``schema.path`` or built from the inline tables.

        Raises:
            SchemaError: when the schema file is missing or invalid.
        """
        if self.schema_.path is not None:
            return load_schema(self.schema_.path)
        return parse_schema(self.schema_._inline_dict(), "schema")

    def model_args(self) -> ModelArgs:
        """What :func:`deepsets.builders.build_model` needs besides the modalities: ``model``,
        checked when it was made."""
        return self.model


def attr(section: str) -> str:
    return "schema_" if section == "schema" else section
