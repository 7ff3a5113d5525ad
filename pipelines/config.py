"""The training run configuration: one TOML file, validated before anything runs.

Every problem is reported at once, one line each, starting with its dotted location::

    run.toml: 3 problems: training.lr: Input should be greater than 0 (found -1); model.fusion: ...

Example (every section but ``[data]`` and ``[schema]`` may be left out; defaults shown)::

    [data]
    train = "data/train/"            # a path or a list of paths: files, directories, globs
    valid = "data/valid/"            # optional
    label_columns = ["clicked"]         # not needed by two_tower
    # group_column = "query_id"        # listwise / pairwise: integer query id of each row
    # item_column = "item_id"          # two_tower: integer item id of each row
    # spec = "spec.json"             # optional: reuse a fitted FeatureSpec instead of fitting

    [schema]
    path = "data/schema.toml"        # or inline: id_column = ... and [[schema.modality]] tables

    [model]
    dim = 128
    layers = 1                       # per-sequence transformer layers (0 = pooling only)
    heads = 4                        # must divide dim
    ff_dim = 0                       # 0 = 4 * dim
    pooling = "mean"                 # mean | max | attention
    fusion = "transformer"           # deepset | attention | transformer | concat | tmm_deepset | mmt
    fusion_layers = 2
    fusion_pooling = "mean"          # sum | mean | max | min | median (tmm_deepset: sum | mean | max)
    dropout = 0.0
    modality_dropout = 0.0

    [task]
    kind = "binary"                  # binary | multilabel | multiclass | regression
                                     # | listwise | pairwise (need data.group_column)
                                     # | two_tower (needs data.item_column and the two lists below)
    num_outputs = 1
    # query_modalities = ["history"] # two_tower: the query tower's modalities
    # item_modalities = ["title"]    # two_tower: the item tower's modalities
    temperature = 0.07               # two_tower: starting softmax temperature (learned)
    logq = true                      # two_tower: logQ correction of in-batch negatives
    k = 10                           # ranking kinds: cutoff of the ndcg_at_k / recall_at_k metrics

    [training]
    epochs = 3
    batch_size = 512                 # the global batch, split evenly over scaling.workers
    optimizer = "adamw"              # adamw | adam | sgd
    lr = 1e-3
    weight_decay = 0.01
    schedule = "cosine"              # constant | cosine | linear
    warmup_steps = 0
    seed = 0
    grad_clip = 1.0                  # 0 = off

    [scaling]
    workers = 2
    use_gpu = false
    cpus_per_worker = 1
    max_failures = 0

    [tracking]
    mlflow_uri = ""                  # "" = sqlite:///mlflow.db in the working directory
    experiment = "deepsets"
    run_name = ""                    # "" = generated from the time; also the Ray run name (--resume)
    storage_path = "ray_results"     # where Ray keeps checkpoints

**Paths.** Relative paths in the file (``data.train``, ``data.valid``, ``data.spec``,
``schema.path``) are relative to the directory of the config file, so a config travels with its
data. Paths given on the command line (``--set data.train=other/``) are relative to the working
directory, like any other command-line path. ``tracking.storage_path`` is relative to the working
directory. All of them are made absolute when the config is loaded (Ray workers do not share the
driver's working directory); URIs (``s3://...``) are left alone.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.errors import SchemaError
from features.schema import FeatureSchema, ModalityConfig, load_schema, parse_schema

# Kept here (not imported from deepsets/) so loading a config does not build the model library;
# tests/pipelines/test_config.py checks that these match deepsets' own lists.
POOLINGS = ("mean", "max", "attention")
FUSIONS = ("deepset", "attention", "transformer", "concat", "tmm_deepset", "mmt")
FUSION_POOLINGS = ("sum", "mean", "max", "min", "median")
TMM_POOLINGS = ("sum", "mean", "max")
TASKS = ("binary", "multilabel", "multiclass", "regression", "listwise", "pairwise", "two_tower")
GROUPED_TASKS = ("listwise", "pairwise")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "linear")

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

    train: Tuple[_Text, ...] = Field(min_length=1, strict=False)
    valid: Optional[Tuple[_Text, ...]] = Field(default=None, min_length=1, strict=False)
    label_columns: Tuple[_Text, ...] = Field((), strict=False)  # required by every task kind but two_tower
    spec: Optional[_Text] = None
    group_column: Optional[_Text] = None  # listwise / pairwise: the integer query id of each row
    item_column: Optional[_Text] = None  # two_tower: the integer item id of each row

    _as_tuple = field_validator("train", "valid", mode="before")(_paths)

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

    path: Optional[_Text] = None
    id_column: Optional[_Text] = None
    modality: Optional[Tuple[ModalityConfig, ...]] = None

    @model_validator(mode="after")
    def _one_source(self) -> "SchemaConfig":
        problem = _schema_source_problem(self.path is not None, self.id_column is not None or self.modality is not None)
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


class ModelConfig(BaseModel):
    """Plain values for :func:`deepsets.builders.build_model`."""

    model_config = _STRICT

    dim: int = Field(128, ge=1, le=65536)
    layers: int = Field(1, ge=0, le=64)
    heads: int = Field(4, ge=1, le=1024)
    ff_dim: int = Field(0, ge=0, le=1 << 20)
    pooling: Literal[POOLINGS] = "mean"  # type: ignore[valid-type]
    fusion: Literal[FUSIONS] = "transformer"  # type: ignore[valid-type]
    fusion_layers: int = Field(2, ge=1, le=64)
    fusion_pooling: Literal[FUSION_POOLINGS] = "mean"  # type: ignore[valid-type]
    dropout: _Rate = 0.0
    modality_dropout: _Rate = 0.0


class TaskConfig(BaseModel):
    """What the head predicts: 1 logit (binary), one per label / class, or one per target; one
    ranking score per row (listwise / pairwise over ``data.group_column`` groups); or, for
    two_tower, a query and an item embedding (towers over the listed modalities)."""

    model_config = _STRICT

    kind: Literal[TASKS] = "binary"  # type: ignore[valid-type]
    num_outputs: int = Field(1, ge=1, le=1_000_000)
    query_modalities: Tuple[_Text, ...] = Field((), strict=False)  # two_tower only
    item_modalities: Tuple[_Text, ...] = Field((), strict=False)  # two_tower only
    temperature: float = Field(0.07, gt=0.01, le=10.0)  # two_tower: starting softmax temperature (learned)
    logq: bool = True  # two_tower: correct in-batch negatives by item popularity
    k: int = Field(10, ge=1, le=100_000)  # ranking kinds: the cutoff of ndcg_at_k / recall_at_k


class TrainingConfig(BaseModel):
    """The optimisation loop."""

    model_config = _STRICT

    epochs: int = Field(3, ge=1, le=100_000)
    batch_size: int = Field(512, ge=1, le=1 << 24)
    optimizer: Literal[OPTIMIZERS] = "adamw"  # type: ignore[valid-type]
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.01, ge=0.0)
    schedule: Literal[SCHEDULES] = "cosine"  # type: ignore[valid-type]
    warmup_steps: int = Field(0, ge=0)
    seed: int = Field(0, ge=0, lt=2**32)
    grad_clip: float = Field(1.0, ge=0.0)


class ScalingConfig(BaseModel):
    """Ray Train workers."""

    model_config = _STRICT

    workers: int = Field(2, ge=1, le=4096)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    max_failures: int = Field(0, ge=0)


class TrackingConfig(BaseModel):
    """MLflow and Ray run bookkeeping."""

    model_config = _STRICT

    mlflow_uri: str = ""
    experiment: _Text = "deepsets"
    run_name: str = ""  # also a directory name under storage_path
    storage_path: _Text = "ray_results"
    parent_run_id: str = ""  # nest the MLflow run under this one (ablation retrains)

    @field_validator("run_name")
    @classmethod
    def _directory_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]*", name) or name in (".", ".."):
            raise ValueError("may hold only letters, digits, '_', '-' and '.' (it names a directory)")
        return name

    def resolved_mlflow_uri(self, cwd: Optional[str] = None) -> str:
        """``mlflow_uri``, or ``sqlite:///<cwd>/mlflow.db`` when it is empty."""
        if self.mlflow_uri:
            return self.mlflow_uri
        return "sqlite:///" + os.path.join(os.path.abspath(cwd or os.getcwd()), "mlflow.db")

    def resolved_run_name(self, now: Optional[datetime] = None) -> str:
        """``run_name``, or ``run-YYYYmmdd-HHMMSS`` from ``now`` (default: the current time)."""
        return self.run_name or (now or datetime.now()).strftime("run-%Y%m%d-%H%M%S")


SECTIONS: Dict[str, type[BaseModel]] = {
    "data": DataConfig,
    "schema": SchemaConfig,
    "model": ModelConfig,
    "task": TaskConfig,
    "training": TrainingConfig,
    "scaling": ScalingConfig,
    "tracking": TrackingConfig,
}
_REQUIRED_SECTIONS = ("data", "schema")


class RunConfig(BaseModel):
    """A whole training run. The ``[schema]`` section is the attribute ``schema_`` (pydantic's
    ``BaseModel.schema`` owns the plain name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    data: DataConfig
    schema_: SchemaConfig = Field(alias="schema")
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    training: TrainingConfig = TrainingConfig()
    scaling: ScalingConfig = ScalingConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> "RunConfig":
        values = {f"{s}.{k}": v for s in SECTIONS for k, v in getattr(self, _attr(s)).__dict__.items()}
        problems = [f"{loc}: {msg}" for loc, msg in _cross_problems(values)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- views ---------------------------------------------------------------------------

    def as_dict(self) -> dict:
        """JSON- and TOML-able nested dict; ``parse_run_config(cfg.as_dict(), ...) == cfg``."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def to_toml_dict(self) -> dict:
        """Same as :meth:`as_dict` (TOML has no null, so unset optional fields are left out)."""
        return self.as_dict()

    def to_toml(self) -> str:
        """The config as TOML text, which :func:`load_run_config` reads back to an equal config."""
        return _dump_toml(self.as_dict())

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def flat_params(self) -> Dict[str, Scalar]:
        """``{"section.field": scalar}`` for MLflow params: lists joined with ",", unset optional
        values as "", an inline schema summarised as ``schema.modalities="name:kind,..."``."""
        out: Dict[str, Scalar] = {}
        for section in SECTIONS:
            sub = getattr(self, _attr(section))
            for key, value in sub.__dict__.items():
                if section == "schema" and key == "modality":
                    continue
                if value is None:
                    value = ""
                elif isinstance(value, tuple):
                    value = ",".join(str(v) for v in value)
                out[f"{section}.{key}"] = value
        if self.schema_.modality is not None:
            out["schema.modalities"] = ",".join(f"{m.name}:{m.kind}" for m in sorted(self.schema_.modality, key=lambda m: m.name))
        return out

    def feature_schema(self) -> FeatureSchema:
        """The feature schema: read from ``schema.path`` or built from the inline tables.

        Raises:
            SchemaError: when the schema file is missing or invalid.
        """
        if self.schema_.path is not None:
            return load_schema(self.schema_.path)
        return parse_schema(self.schema_._inline_dict(), "schema")

    def model_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`deepsets.builders.build_model`, all but ``inputs``."""
        m = self.model
        return {
            "dim": m.dim,
            "layers": m.layers,
            "heads": m.heads,
            "ff_dim": m.ff_dim or None,
            "pooling": m.pooling,
            "fusion": m.fusion,
            "fusion_layers": m.fusion_layers,
            "fusion_pooling": m.fusion_pooling,
            "dropout": m.dropout,
            "modality_dropout": m.modality_dropout,
            "task": self.task.kind,
            "num_outputs": self.task.num_outputs,
            **({"query_modalities": list(self.task.query_modalities), "item_modalities": list(self.task.item_modalities),
                "temperature": self.task.temperature} if self.task.kind == "two_tower" else {}),
        }


def _attr(section: str) -> str:
    return "schema_" if section == "schema" else section


# -- cross-field checks ---------------------------------------------------------------------

# (fields that must be valid, fields passed as None when invalid, the check)
_Check = Tuple[Tuple[str, ...], Tuple[str, ...], Callable[..., Optional[Tuple[str, str]]]]


def _heads_divide_dim(heads: int, dim: int, layers: Optional[int], fusion: Optional[str]) -> Optional[Tuple[str, str]]:
    # Heads are unused only by pooling-only summarizers feeding a head without attention;
    # when layers or fusion is itself invalid (None here), check anyway.
    used = fusion in ("transformer", "mmt", None) or layers is None or (layers > 0 and fusion != "mmt")
    if used and dim % heads:
        return "model.heads", f"must divide model.dim (heads = {heads}, dim = {dim})"
    return None


def _tmm_pooling(fusion: str, pooling: str) -> Optional[Tuple[str, str]]:
    if fusion == "tmm_deepset" and pooling not in TMM_POOLINGS:
        return "model.fusion_pooling", f"fusion 'tmm_deepset' supports {', '.join(TMM_POOLINGS)} (found {pooling!r})"
    return None


def _outputs(kind: str, n: int) -> Optional[Tuple[str, str]]:
    if kind in ("binary",) + GROUPED_TASKS and n != 1:
        return "task.num_outputs", f"a {kind} task has exactly 1 output (found {n})"
    if kind == "multiclass" and n < 2:
        return "task.num_outputs", f"a multiclass task needs at least 2 classes (found {n})"
    return None


def _even_batches(batch_size: int, workers: int) -> Optional[Tuple[str, str]]:
    if batch_size % workers:
        return (
            "training.batch_size",
            f"must be divisible by scaling.workers (batch_size = {batch_size}, workers = {workers}; "
            "the global batch is split evenly across workers)",
        )
    return None


def _task_columns(kind: str, labels: tuple, group: Optional[str], item: Optional[str]) -> Optional[Tuple[str, str]]:
    if kind != "two_tower" and not labels:
        return "data.label_columns", f"a {kind} task needs at least one label column"
    if kind == "two_tower" and labels:
        return "data.label_columns", f"a two_tower task learns from (query, item) rows and reads no labels (found {list(labels)})"
    if kind in GROUPED_TASKS and len(labels) != 1:
        return "data.label_columns", f"a {kind} task ranks by one relevance column (found {list(labels)})"
    if kind in GROUPED_TASKS and not group:
        return "data.group_column", f"a {kind} task ranks rows within query groups: name the integer query id column (e.g. group_column = \"query_id\")"
    if kind not in GROUPED_TASKS and group:
        return "data.group_column", f"is used only by listwise / pairwise tasks (task.kind = {kind!r})"
    if kind == "two_tower" and not item:
        return "data.item_column", "a two_tower task needs the integer item id column (in-batch duplicates, popularity, validation corpus)"
    if kind != "two_tower" and item:
        return "data.item_column", f"is used only by two_tower tasks (task.kind = {kind!r})"
    return None


def _towers(kind: str, query: tuple, item: tuple, fusion: Optional[str]) -> Optional[Tuple[str, str]]:
    if kind != "two_tower":
        if query or item:
            return "task.query_modalities", f"query_modalities / item_modalities are used only by two_tower (task.kind = {kind!r})"
        return None
    if not query or not item:
        return "task.query_modalities" if not query else "task.item_modalities", "a two_tower task needs both query_modalities and item_modalities"
    if fusion == "mmt":
        return "model.fusion", "two_tower towers are set-fusion models: the mmt baseline cannot be a tower"
    shared = sorted(set(query) & set(item))
    if shared:
        return "task.item_modalities", f"a modality belongs to one tower, found in both: {shared}"
    return None


_CHECKS: List[_Check] = [
    (("task.kind", "data.label_columns", "data.group_column", "data.item_column"), (), _task_columns),
    (("task.kind", "task.query_modalities", "task.item_modalities"), ("model.fusion",), _towers),
    (("model.heads", "model.dim"), ("model.layers", "model.fusion"), _heads_divide_dim),
    (("model.fusion", "model.fusion_pooling"), (), _tmm_pooling),
    (("task.kind", "task.num_outputs"), (), _outputs),
    (("training.batch_size", "scaling.workers"), (), _even_batches),
]


def _cross_problems(values: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """Checks across fields; each runs only when every field it reads is itself valid."""
    found = []
    for keys, optional, check in _CHECKS:
        if all(k in values for k in keys):
            problem = check(*(values[k] for k in keys), *(values.get(k) for k in optional))
            if problem:
                found.append(problem)
    return found


def _schema_source_problem(has_path: bool, has_inline: bool) -> Optional[str]:
    if has_path and has_inline:
        return "give either path = \"schema.toml\" or inline id_column / [[schema.modality]] tables, not both"
    if not has_path and not has_inline:
        return "give either path = \"schema.toml\" or inline [[schema.modality]] tables"
    return None


# -- validation -----------------------------------------------------------------------------


def _location(loc: Sequence[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _suggest(name: str, choices: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    if close:
        return f"unknown {what} (did you mean '{close[0]}'?)"
    return f"unknown {what} (expected one of {', '.join(choices)})"


def _readable(section: str, cls: type[BaseModel], e: dict) -> str:
    """A pydantic error inside ``[section]`` as 'location: message (found value)'."""
    loc, kind = tuple(e["loc"]), e["type"]
    where = _location((section,) + loc)
    if kind == "extra_forbidden":
        return f"{where}: " + _suggest(str(loc[-1]), list(cls.model_fields), "field")
    msg = e["msg"].removeprefix("Value error, ")
    if kind == "tuple_type":  # tuples are how lists are stored; the TOML author wrote an array
        msg = "Input should be a list"
    elif kind == "too_short" and isinstance(e.get("input"), (list, tuple)):
        n = e["ctx"]["min_length"]
        msg = f"List should have at least {n} item{'s' if n != 1 else ''}"
    found = e.get("input")
    if kind != "missing" and isinstance(found, (int, float, str)) and "(found" not in msg:
        msg += f" (found {found!r})"
    return f"{where}: {msg}"


def _validate_section(section: str, cls: type[BaseModel], raw: Any) -> Tuple[Optional[BaseModel], List[str], Dict[str, Any]]:
    """Validate one section; return it (or None), its problems, and its valid field values."""
    if not isinstance(raw, dict):
        return None, [f"{section}: must be a table [{section}] (found {raw!r})"], {}
    try:
        sub = cls.model_validate(raw)
        return sub, [], {f"{section}.{k}": v for k, v in sub.__dict__.items()}
    except ValidationError as err:
        problems = [_readable(section, cls, e) for e in err.errors()]
        bad = {e["loc"][0] for e in err.errors() if e["loc"]}
    # Keep the fields that are fine on their own, so cross-field checks still run on them.
    try:
        partial = cls.model_validate({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:  # a required field is among the bad ones
        return None, problems, {}
    return None, problems, {f"{section}.{k}": v for k, v in partial.__dict__.items() if k not in bad}


def _validate_schema_section(raw: Any) -> Tuple[Optional[SchemaConfig], List[str]]:
    """``[schema]``: exactly one of path / inline tables; inline ones checked by parse_schema."""
    if not isinstance(raw, dict):
        return None, [f"schema: must be a table [schema] (found {raw!r})"]
    problems: List[str] = []
    for key in raw:
        if key not in SchemaConfig.model_fields:
            problems.append(f"schema.{key}: " + _suggest(key, list(SchemaConfig.model_fields), "field"))
    has_path, has_inline = "path" in raw, "id_column" in raw or "modality" in raw
    source = _schema_source_problem(has_path, has_inline)
    if source:
        problems.append(f"schema: {source}")
    path = raw.get("path")
    if has_path and not (isinstance(path, str) and path):
        problems.append(f"schema.path: must be a non-empty string (found {path!r})")
    inline: Optional[FeatureSchema] = None
    if has_inline:
        try:
            inline = parse_schema({k: raw[k] for k in ("id_column", "modality") if k in raw}, "schema")
        except SchemaError as err:
            for p in err.problems:  # 'modality[2] (tags).max_len: ...' -> 'schema.modality[2] ...'
                top = p.startswith("(top level)")
                problems.append("schema" + p.removeprefix("(top level)") if top else f"schema.{p}")
    if problems:
        return None, problems
    if inline is not None:
        return SchemaConfig(id_column=inline.id_column, modality=tuple(inline.modality)), []
    return SchemaConfig(path=path), []


def _validate(raw: Any, source: str, overrides: Mapping[str, str] = {}) -> RunConfig:
    """Validate a whole config dict, collecting every problem; ``overrides`` maps the
    ``section.field`` keys set on the command line to their ``--set`` text (named in messages)."""
    if not isinstance(raw, dict):
        raise SchemaError(source, [f"(top level): must be a table of sections (found {type(raw).__name__})"])
    problems: List[str] = []
    for key in raw:
        if key not in SECTIONS:
            problems.append(f"{key}: " + _suggest(key, list(SECTIONS), "section"))
    sections: Dict[str, BaseModel] = {}
    values: Dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        if section not in raw and section not in _REQUIRED_SECTIONS:
            sub = cls()
            sections[section] = sub
            values.update({f"{section}.{k}": v for k, v in sub.__dict__.items()})
            continue
        if section == "schema":
            schema, found = _validate_schema_section(raw.get("schema", {}))
            problems.extend(found)
            if schema is not None:
                sections[section] = schema
            continue
        sub, found, good = _validate_section(section, cls, raw.get(section, {}))
        problems.extend(found)
        values.update(good)
        if sub is not None:
            sections[section] = sub
    problems.extend(f"{loc}: {msg}" for loc, msg in _cross_problems(values))
    if problems:
        raise SchemaError(source, [_mention_override(p, overrides) for p in problems])
    return RunConfig(**{_attr(s): v for s, v in sections.items()})


def _mention_override(problem: str, overrides: Mapping[str, str]) -> str:
    """Append '(from --set ...)' to a problem whose location was set on the command line."""
    location = problem.split(":", 1)[0]
    key = ".".join(re.split(r"[\[ ]", location, maxsplit=1)[0].split(".")[:2])
    named = [text for k, text in overrides.items() if k == key or k.startswith(key + ".")]
    return f"{problem} (from --set {', '.join(named)})" if named else problem


# -- paths ----------------------------------------------------------------------------------

_PATH_FIELDS = (("data", "train"), ("data", "valid"), ("data", "spec"), ("schema", "path"))


def _absolute(path: str, base: str) -> str:
    if "://" in path or not path:
        return path
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _resolve(raw: dict, section: str, key: str, base: str) -> None:
    table = raw.get(section)
    if not isinstance(table, dict) or key not in table:
        return
    value = table[key]
    if isinstance(value, str):
        table[key] = _absolute(value, base)
    elif isinstance(value, list):
        table[key] = [_absolute(v, base) if isinstance(v, str) else v for v in value]


def _resolve_paths(raw: dict, base: str, only: Optional[set] = None) -> None:
    for section, key in _PATH_FIELDS:
        if only is None or f"{section}.{key}" in only:
            _resolve(raw, section, key, base)


def _absolute_storage(cfg: RunConfig) -> RunConfig:
    storage = cfg.tracking.storage_path
    absolute = _absolute(storage, os.getcwd())
    if absolute == storage:
        return cfg
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"storage_path": absolute})})


# -- overrides ------------------------------------------------------------------------------


def _override_value(section: str, key: str, text: str) -> Any:
    """A ``--set`` value: a TOML value when it parses as one (numbers, booleans, arrays, quoted
    strings), else the text itself. Text meant for a string field stays text (``run_name=2024``)."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if isinstance(value, (datetime, date, time)):
        return text
    cls = SECTIONS.get(section)
    field = cls.model_fields.get(key) if cls is not None else None
    if field is not None and field.annotation in (str, Optional[str]) and not isinstance(value, str):
        return text
    return value


def _apply_overrides(raw: dict, overrides: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """Set each ``section.field=value`` in ``raw``; return {key: override text} and malformed ones."""
    applied: Dict[str, str] = {}
    bad: List[str] = []
    for item in overrides:
        key, eq, text = item.partition("=")
        key, text = key.strip(), text.strip()
        parts = key.split(".")
        if not eq or len(parts) != 2 or not all(parts):
            bad.append(f"{key or item!s}: cannot apply --set {item!r} (expected section.field=value)")
            continue
        section, field = parts
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            bad.append(f"{key}: cannot apply --set {item!r} ([{section}] is not a table)")
            continue
        table[field] = _override_value(section, field, text)
        applied[key] = item
    return applied, bad


# -- entry points ---------------------------------------------------------------------------


def parse_run_config(raw: dict, source: str = "<config>", base_dir: Optional[str | os.PathLike] = None) -> RunConfig:
    """Validate a config given as a dict (e.g. a saved ``cfg.as_dict()``).

    Relative data / schema / spec paths are resolved against ``base_dir`` when given (left as
    they are otherwise); ``tracking.storage_path`` is made absolute against the working directory.

    Raises:
        SchemaError: listing every problem, one line each, starting with its location.
    """
    raw = _copy(raw)
    if base_dir is not None and isinstance(raw, dict):
        _resolve_paths(raw, os.path.abspath(base_dir))
    return _absolute_storage(_validate(raw, source))


def load_run_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run config TOML, apply ``--set section.field=value`` overrides, validate.

    Relative paths in the file are relative to the file's directory; relative paths given as
    overrides are relative to the working directory (see the module docstring).

    Raises:
        SchemaError: for a missing file, a TOML syntax error (with its line), or any problem in
            the config or the overrides (all listed at once).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SchemaError(source, [f"cannot read config file: {err.strerror or err}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SchemaError(source, [f"TOML syntax error: {err}"]) from None
    _resolve_paths(raw, os.path.dirname(os.path.abspath(path)))
    applied, bad = _apply_overrides(raw, overrides)
    _resolve_paths(raw, os.getcwd(), only=set(applied))
    try:
        cfg = _validate(raw, source, applied)
    except SchemaError as err:
        raise SchemaError(source, bad + err.problems) from None
    if bad:
        raise SchemaError(source, bad)
    return _absolute_storage(cfg)


def default_demo_config(data_dir: str | os.PathLike, workers: int = 2) -> RunConfig:
    """The demo's run: ``data_dir/{train,valid}``, ``data_dir/schema.toml``, binary ``clicked``.

    The batch of 512 is rounded down to a multiple of ``workers`` so it splits evenly.
    """
    base = os.path.abspath(data_dir)
    raw = {
        "data": {"train": "train", "valid": "valid", "label_columns": ["clicked"]},
        "schema": {"path": "schema.toml"},
        # layers = 0: the workload plants order-free means in its sequences and sets, which
        # pooling alone expresses; a transformer layer per sequence modality learns the click
        # history more slowly on 25k rows (benchmarks/RESULTS.md, ablation against the truth)
        "model": {"dim": 64, "layers": 0, "heads": 4, "fusion": "transformer"},
        "task": {"kind": "binary", "num_outputs": 1},
        "training": {"epochs": 3, "batch_size": max(workers, 512 - 512 % max(workers, 1)), "lr": 2e-3},
        "scaling": {"workers": workers},
    }
    return parse_run_config(raw, "<demo config>", base_dir=base)


# -- helpers --------------------------------------------------------------------------------


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value}")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters (but tab) escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _dump_toml(doc: dict) -> str:
    """TOML text for a config dict: tables of scalars / arrays, plus arrays of tables."""
    lines: List[str] = []
    for section, table in doc.items():
        lines.append(f"[{section}]")
        tables = {k: v for k, v in table.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
        for key, value in table.items():
            if key not in tables:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        for key, items in tables.items():
            for item in items:
                lines.append(f"[[{section}.{key}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
                lines.append("")
    return "\n".join(lines)


def parse_options(cls: type[BaseModel], what: str, values: Mapping[str, Any]) -> BaseModel:
    """``cls(**values)`` for a command's options (``deepsets embed``, ``deepsets ablate``).

    Raises:
        ValueError: ``bad <what> options: field: problem; ...``, every bad field on one line.
    """
    try:
        return cls(**values)
    except ValidationError as err:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise ValueError(f"bad {what} options: " + "; ".join(problems)) from None
