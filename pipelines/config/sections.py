"""The sections of a run config, one pydantic model each, and :class:`RunConfig`, the whole run."""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import datetime
from typing import Annotated, Any, Callable, Dict, Literal, Optional, Tuple, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from deepsets.choices import NEGATIVES, OPTIMIZERS, SCHEDULES, SEQUENCE_POOLINGS, SET_POOLINGS
from deepsets.features.kinds.base import BaseFeature
from deepsets.features.schema import FeatureSchema, features_by_kind, load_schema, parse_schema
from deepsets.fusion_heads import fusion_names
from deepsets.model_args import LEAST, ModelArgs
from deepsets.pipelines.config.checks import run_problems, schema_source_problem
from deepsets.pipelines.config.toml_text import dump_toml
from deepsets.task_kinds import task_names

Scalar = Union[str, int, float, bool]

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
_Text = Annotated[str, Field(min_length=1)]
_Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
_Pair = Annotated[Tuple[_Text, _Text], Field(strict=False)]  # TOML gives a list


def _registered(names: Callable[[], Tuple[str, ...]]) -> Any:
    """A name that must be registered when the value is validated (a head or task kind added by
    a plug-in is a choice too); refused with the same message as a ``Literal``."""

    def check(value: str) -> str:
        choices = names()
        if value not in choices:
            quoted = [repr(c) for c in choices]
            expected = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "enum": list(names())})]


FusionName = _registered(fusion_names)
"""``model.fusion``: a head of ``deepsets.fusion_heads``."""
TaskName = _registered(task_names)
"""``task.kind``: a kind of ``deepsets.task_kinds``."""


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


_MODEL = ModelArgs()
"""The model library's defaults: the one place each model setting's default is written."""


class ModelConfig(BaseModel):
    """Plain values for :func:`deepsets.builders.build_model`: the fields of
    :class:`deepsets.model_args.ModelArgs` a ``[model]`` section sets, with its defaults and
    lower bounds (its rules across fields run when the whole config is checked)."""

    model_config = _STRICT

    dim: int = Field(_MODEL.dim, ge=LEAST["dim"], le=65536)  # the shared width D of every modality vector
    layers: int = Field(
        _MODEL.layers, ge=LEAST["layers"], le=64
    )  # transformer layers per sequence modality (0 = pooling only)
    heads: int = Field(_MODEL.heads, ge=LEAST["heads"], le=1024)  # attention heads; must divide dim
    ff_dim: int = Field(_MODEL.ff_dim, ge=LEAST["ff_dim"], le=1 << 20)  # feed-forward width (0 = 4 * dim)
    pooling: Literal[SEQUENCE_POOLINGS] = _MODEL.pooling  # type: ignore[valid-type]  # pooling within a sequence modality
    fusion: FusionName = _MODEL.fusion  # type: ignore[valid-type]  # the fusion head over the set of modality vectors
    fusion_layers: int = Field(_MODEL.fusion_layers, ge=LEAST["fusion_layers"], le=64)  # layers of the fusion head
    fusion_pooling: Literal[SET_POOLINGS] = _MODEL.fusion_pooling  # type: ignore[valid-type]  # deepset heads: pooling over the set (tmm_deepset: sum, mean or max)
    dropout: _Rate = _MODEL.dropout  # dropout inside the encoders and the fusion head
    modality_dropout: _Rate = _MODEL.modality_dropout  # training: the chance of dropping each whole modality of a row


class TaskConfig(BaseModel):
    """What the head predicts: 1 logit (binary), one per label / class, or one per target; one
    ranking score per row (listwise / pairwise over ``data.group_column`` groups); or, for
    two_tower, a query and an item embedding (towers over the listed modalities)."""

    model_config = _STRICT

    kind: TaskName = _MODEL.task  # type: ignore[valid-type]  # listwise / pairwise need data.group_column; two_tower data.item_column
    num_outputs: int = Field(
        _MODEL.num_outputs, ge=LEAST["num_outputs"], le=1_000_000
    )  # logits per row: 1 (binary), the labels (multilabel), the classes (multiclass)
    query_modalities: Tuple[_Text, ...] = Field((), strict=False)  # two_tower only
    item_modalities: Tuple[_Text, ...] = Field((), strict=False)  # two_tower only
    temperature: float = Field(
        _MODEL.temperature, gt=0.01, le=10.0
    )  # two_tower: starting softmax temperature (learned)
    shortcuts: Tuple[_Pair, ...] = Field(
        (), strict=False
    )  # two_tower: (query, item) modality pairs scored directly too
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
    max_failures: int = Field(0, ge=0)  # restarts from the last checkpoint after a worker failure


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
    "model": ModelConfig,
    "task": TaskConfig,
    "training": TrainingConfig,
    "scaling": ScalingConfig,
    "tracking": TrackingConfig,
}
REQUIRED_SECTIONS = ("data", "schema")


class RunConfig(BaseModel):
    """A whole training run. The ``[schema]`` section is the attribute ``schema_`` (pydantic's
    ``BaseModel.schema`` owns the plain name).

    Validating it checks the fields across sections once and keeps the model settings as one
    checked :class:`deepsets.model_args.ModelArgs` (:meth:`model_args`); a pickled copy (a Ray
    worker's) carries them and is not checked again."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    data: DataConfig
    schema_: SchemaConfig = Field(alias="schema")
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    training: TrainingConfig = TrainingConfig()
    scaling: ScalingConfig = ScalingConfig()
    tracking: TrackingConfig = TrackingConfig()
    _model_args: Optional[Tuple[ModelConfig, TaskConfig, ModelArgs]] = PrivateAttr(default=None)
    """The checked model settings, with the two sections they were made from."""

    @model_validator(mode="after")
    def _cross_checks(self) -> "RunConfig":
        model_args, problems = run_problems(self._values())
        if problems:
            raise ValueError("; ".join(f"{loc}: {msg}" for loc, msg in problems))
        self._model_args = (self.model, self.task, model_args)
        return self

    @classmethod
    def from_checked(cls, sections: Dict[str, BaseModel], model_args: ModelArgs) -> "RunConfig":
        """A config from sections that :func:`deepsets.pipelines.config.checks.run_problems` has
        already checked, with the model settings it made: the checks do not run again.

        Args:
            sections: section name (``"schema"`` included) -> its validated section.
        """
        cfg = cls.model_construct(**{attr(s): v for s, v in sections.items()})
        cfg._model_args = (cfg.model, cfg.task, model_args)
        return cfg

    def _values(self) -> Dict[str, Any]:
        return {f"{s}.{k}": v for s in SECTIONS for k, v in getattr(self, attr(s)).__dict__.items()}

    # -- views ---------------------------------------------------------------------------

    def as_dict(self) -> dict:
        """JSON- and TOML-able nested dict; ``parse_run_config(cfg.as_dict(), ...) == cfg``."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def to_toml(self) -> str:
        """The config as TOML text, which :func:`load_run_config` reads back to an equal config."""
        return dump_toml(self.as_dict())

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def flat_params(self) -> Dict[str, Scalar]:
        """``{"section.field": scalar}`` for MLflow params: lists joined with ",", unset optional
        values as "", an inline schema summarised as ``schema.modalities="name:kind,..."``."""
        out: Dict[str, Scalar] = {}
        for section in SECTIONS:
            sub = getattr(self, attr(section))
            for key, value in sub.__dict__.items():
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
        """What :func:`deepsets.builders.build_model` needs besides the modalities: the
        ``[model]`` section, plus the task and (two_tower) its towers, checked once when the
        config was validated (again only for a copy whose ``model`` or ``task`` was replaced)."""
        kept = self._model_args
        if kept is None or kept[0] is not self.model or kept[1] is not self.task:
            model_args, problems = run_problems(self._values())
            if problems:
                raise ValueError("; ".join(f"{loc}: {msg}" for loc, msg in problems))
            kept = self._model_args = (self.model, self.task, model_args)
        return kept[2]


def attr(section: str) -> str:
    return "schema_" if section == "schema" else section
