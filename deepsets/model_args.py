"""``ModelArgs``: the one typed shape of a model's settings, from the run config to the builder.

    args = ModelArgs(dim=64, fusion="deepset", task="binary")
    model = build_model(spec.model_inputs(), args)       # or build_model(inputs, dim=64, ...)
    json.dumps(args.to_dict())                            # what checkpoints and logged models keep
    ModelArgs.from_dict(saved) == args                    # and read back

A run config's ``[model]`` section is read into this same type, with the model's part of
``[task]`` (``task.kind`` is ``task``, ``task.num_outputs``, the two-tower fields: see
``deepsets.pipelines.config.sections.MODEL_LOCATIONS``). So each model setting is declared once,
here: its type, default, bounds and meaning (the trailing comment, which the configuration
reference prints). So are its rules across fields (heads dividing ``dim``, the head's poolings,
``num_outputs`` for the task, the two-tower rules, :data:`MODEL_RULES`); a ``ModelArgs`` holds
only settings that pass them.

This module imports no torch: a config, a checkpoint reader or a tuner can hold the settings
without loading the model library.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Dict, List, Literal, Mapping, Optional, Tuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from deepsets.choices import SEQUENCE_POOLINGS, SET_POOLINGS
from deepsets.fusion_heads import fusion_names, fusion_traits
from deepsets.task_kinds import task_names, task_traits

TWO_TOWER_FIELDS = ("query_modalities", "item_modalities", "temperature", "shortcuts")

LEAST: Dict[str, int] = {"dim": 1, "heads": 1, "fusion_layers": 1, "num_outputs": 1, "layers": 0, "ff_dim": 0}
"""The smallest value of each integer setting."""

_FIELDS_ONLY = {"model_rules": False}
"""Validation context of :meth:`ModelArgs.check_fields`."""

Problem = Tuple[str, str]
"""``(where, message)``: the field a problem is reported on, named as the caller names it."""
Names = Callable[[str], str]
"""A ``ModelArgs`` field name -> how messages name it (a run config says ``model.dim`` for ``dim``)."""


def _plain(field: str) -> str:
    return field


class _ChoicesInSchema:
    """The JSON schema of a registered name: its choices, read when a schema is asked for (not
    when the class is made, which would load plug-ins at import)."""

    def __init__(self, names: Callable[[], Tuple[str, ...]]) -> None:
        self.names = names

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> Dict[str, Any]:
        return {"type": "string", "enum": list(self.names())}


def registered(names: Callable[[], Tuple[str, ...]]) -> Any:
    """A name that must be registered when the value is validated (a head or task kind added by
    a plug-in is a choice too); refused with the same message as a ``Literal``."""

    def check(value: str) -> str:
        choices = names()
        if value not in choices:
            quoted = [repr(c) for c in choices]
            expected = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value

    return Annotated[str, AfterValidator(check), _ChoicesInSchema(names)]


FusionName = registered(fusion_names)
"""``model.fusion``: a head of ``deepsets.fusion_heads``."""
TaskName = registered(task_names)
"""``task.kind``: a kind of ``deepsets.task_kinds``."""
_Text = Annotated[str, Field(min_length=1)]
_Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
_Pair = Annotated[Tuple[_Text, _Text], Field(strict=False)]  # TOML and JSON give lists


def fusion_pooling_problem(fusion: str, pooling: str) -> Optional[str]:
    """Why the head ``fusion`` cannot pool with ``pooling`` (None when it can, or ignores it)."""
    poolings = fusion_traits(fusion).poolings
    if poolings is not None and pooling not in poolings:
        return f"fusion {fusion!r} supports {', '.join(poolings)} (found {pooling!r})"
    return None


def _towers(
    name: Names, task: str, query: tuple, item: tuple, fusion: Optional[str], shortcuts: Optional[tuple]
) -> Optional[Problem]:
    shortcuts = shortcuts or ()
    if task != "two_tower":
        if query or item:
            return name("query_modalities"), (
                f"query_modalities / item_modalities are used only by two_tower ({name('task')} = {task!r})"
            )
        if shortcuts:
            return name("shortcuts"), f"shortcuts are used only by two_tower ({name('task')} = {task!r})"
        return None
    if not query or not item:
        return (
            name("query_modalities" if not query else "item_modalities"),
            "a two_tower task needs both query_modalities and item_modalities",
        )
    if fusion is not None and not fusion_traits(fusion).set_head:
        return name("fusion"), f"two_tower towers are set-fusion models: the {fusion} baseline cannot be a tower"
    shared = sorted(set(query) & set(item))
    if shared:
        return name("item_modalities"), f"a modality belongs to one tower, found in both: {shared}"
    for pair in shortcuts:
        if pair[0] not in query or pair[1] not in item:
            return name("shortcuts"), (
                f"each pair is [query modality, item modality]: {list(pair)} must pair one of {list(query)} "
                f"with one of {list(item)}"
            )
    return None


def _heads_divide_dim(
    name: Names, heads: int, dim: int, layers: Optional[int], fusion: Optional[str]
) -> Optional[Problem]:
    # Heads are unused only by pooling-only summarizers feeding a head without attention (a
    # whole-model baseline has no summarizers); when layers or fusion is itself invalid (None
    # here), check anyway.
    traits = None if fusion is None else fusion_traits(fusion)
    used = traits is None or traits.attention or layers is None or (layers > 0 and traits.set_head)
    if used and dim % heads:
        return name("heads"), f"must divide {name('dim')} (heads = {heads}, dim = {dim})"
    return None


def _fusion_pooling(name: Names, fusion: str, pooling: str) -> Optional[Problem]:
    problem = fusion_pooling_problem(fusion, pooling)
    return (name("fusion_pooling"), problem) if problem else None


def _outputs(name: Names, task: str, num_outputs: int) -> Optional[Problem]:
    problem = task_traits(task).outputs_problem(num_outputs)
    return (name("num_outputs"), problem) if problem else None


MODEL_RULES: Tuple[Tuple[Tuple[str, ...], Tuple[str, ...], Callable[..., Optional[Problem]]], ...] = (
    (("task", "query_modalities", "item_modalities"), ("fusion", "shortcuts"), _towers),
    (("heads", "dim"), ("layers", "fusion"), _heads_divide_dim),
    (("fusion", "fusion_pooling"), (), _fusion_pooling),
    (("task", "num_outputs"), (), _outputs),
)
"""The rules across model settings, each written once: ``(fields it needs, fields it reads when
valid (else None), the rule)``."""


def model_problems(values: Mapping[str, Any], name: Names = _plain) -> List[Problem]:
    """The problems :data:`MODEL_RULES` find in ``values``, each rule run only when every field
    it needs is there (a caller leaves out the fields that are invalid on their own, so one
    mistake is reported once).

    Args:
        values: ``ModelArgs`` field name -> value, for the fields that are valid on their own.
        name: how messages name a field (and where each problem is reported).
    """
    found = []
    for needed, optional, rule in MODEL_RULES:
        if all(field in values for field in needed):
            problem = rule(name, *(values[f] for f in needed), *(values.get(f) for f in optional))
            if problem:
                found.append(problem)
    return found


class ModelArgsError(ValueError):
    """Settings a :class:`ModelArgs` refuses; ``problems`` lists each as ``(where, message)``."""

    def __init__(self, problems: List[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("model arguments: " + "; ".join(f"{where}: {message}" for where, message in self.problems))

    def __reduce__(self):
        return type(self), (self.problems,)


def _field_problem(error: Mapping[str, Any]) -> Problem:
    """``(where, message)`` of one pydantic error on a field (``shortcuts[0]`` for an item)."""
    loc = [str(part) for part in error["loc"]]
    where = loc[0] + "".join(f"[{part}]" for part in loc[1:]) if loc else "(model arguments)"
    message = error["msg"]
    found = error.get("input")
    if error["type"] != "missing" and isinstance(found, (int, float, str)):
        message += f" (found {found!r})"
    return where, message


class ModelArgs(BaseModel):
    """Everything :func:`deepsets.builders.build_model` needs besides the modalities. In a run
    config, the fields from ``dim`` to ``modality_dropout`` are the ``[model]`` section; ``task``
    (written ``kind``) and the fields after it are set in ``[task]``.

    Args:
        **settings: the fields below; ``ff_dim = 0`` means ``4 * dim``
            (:attr:`feed_forward_dim`); a saved ``None`` (checkpoints of earlier versions)
            reads as 0.

    Raises:
        ModelArgsError: (a ValueError) naming every field outside its choices or range, or,
            when every field is valid on its own, every rule of :data:`MODEL_RULES` broken.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    dim: int = Field(128, ge=LEAST["dim"], le=65536)  # the shared width D of every modality vector
    layers: int = Field(1, ge=LEAST["layers"], le=64)  # transformer layers per sequence modality (0 = pooling only)
    heads: int = Field(4, ge=LEAST["heads"], le=1024)  # attention heads; must divide dim
    ff_dim: int = Field(0, ge=LEAST["ff_dim"], le=1 << 20)  # feed-forward width (0 = 4 * dim)
    pooling: Literal[SEQUENCE_POOLINGS] = "mean"  # type: ignore[valid-type]  # pooling within a sequence modality
    fusion: FusionName = "transformer"  # type: ignore[valid-type]  # the fusion head over the set of modality vectors
    fusion_layers: int = Field(2, ge=LEAST["fusion_layers"], le=64)  # layers of the fusion head
    fusion_pooling: Literal[SET_POOLINGS] = "mean"  # type: ignore[valid-type]  # deepset heads: pooling over the set (tmm_deepset: sum, mean or max)
    dropout: _Rate = 0.0  # dropout inside the encoders and the fusion head
    modality_dropout: _Rate = 0.0  # training: the chance of dropping each whole modality of a row
    task: TaskName = "binary"  # type: ignore[valid-type]  # what the model predicts; listwise / pairwise need data.group_column; two_tower data.item_column
    num_outputs: int = Field(
        1, ge=LEAST["num_outputs"], le=1_000_000
    )  # logits per row: 1 (binary), the labels (multilabel), the classes (multiclass)
    query_modalities: Tuple[_Text, ...] = Field((), strict=False)  # two_tower only: the query tower's modalities
    item_modalities: Tuple[_Text, ...] = Field((), strict=False)  # two_tower only: the item tower's modalities
    temperature: float = Field(0.07, gt=0.01, le=10.0)  # two_tower: starting softmax temperature (learned)
    shortcuts: Tuple[_Pair, ...] = Field(
        (), strict=False
    )  # two_tower: (query, item) modality pairs scored directly too (wide-and-deep style)

    def __init__(self, /, **settings: Any) -> None:
        __tracebackhide__ = True
        try:
            self.__pydantic_validator__.validate_python(settings, self_instance=self)
        except ValidationError as err:
            raise ModelArgsError(self._problems(err)) from None

    @classmethod
    def check_fields(cls, settings: Mapping[str, Any]) -> "ModelArgs":
        """Settings with each field checked and :data:`MODEL_RULES` left to the caller: a run
        config runs them itself once it has every section, naming its own locations
        (``deepsets.pipelines.config.checks``).

        Raises:
            pydantic.ValidationError: for each field outside its type, choices or range.
        """
        instance = cls.__new__(cls)
        cls.__pydantic_validator__.validate_python(dict(settings), self_instance=instance, context=_FIELDS_ONLY)
        return instance

    @staticmethod
    def _problems(err: ValidationError) -> List[Problem]:
        found: List[Problem] = []
        for error in err.errors():
            cause = (error.get("ctx") or {}).get("error")
            found.extend(cause.problems if isinstance(cause, ModelArgsError) else [_field_problem(error)])
        return found

    @field_validator("shortcuts", mode="before")
    @classmethod
    def _pairs(cls, pairs: Any) -> Any:
        bad = (
            [list(p) for p in pairs if isinstance(p, (list, tuple)) and len(p) != 2]
            if isinstance(pairs, (list, tuple))
            else []
        )
        if bad:
            raise ValueError(f"must be (query modality, item modality) pairs (found {bad})")
        return pairs

    @model_validator(mode="before")
    @classmethod
    def _earlier_versions(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ff_dim" in data and data["ff_dim"] is None:  # how "4 * dim" was saved
            data = {**data, "ff_dim": 0}
        return data

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> "ModelArgs":
        if (info.context or {}).get("model_rules", True):
            problems = model_problems(dict(self))
            if problems:
                raise ModelArgsError(problems)
        return self

    @property
    def feed_forward_dim(self) -> int:
        """The feed-forward width the layers get: ``ff_dim``, or ``4 * dim`` when it is 0."""
        return self.ff_dim or 4 * self.dim

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON values; the two-tower fields only for two_tower (as checkpoints always held)."""
        out = self.model_dump(mode="json")
        if self.task != "two_tower":
            for name in TWO_TOWER_FIELDS:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelArgs":
        """Read back :meth:`to_dict` (or the ``model_config.json`` of a checkpoint).

        Raises:
            ValueError: for unknown keys or values outside their choices.
        """
        known = set(cls.model_fields)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model arguments: unknown {unknown} (known: {', '.join(sorted(known))})")
        return cls(**data)

    def replace(self, **changes: Any) -> "ModelArgs":
        """A copy with ``changes``, checked like a new one.

        Raises:
            ModelArgsError: as the constructor does.
        """
        return type(self)(**{**dict(self), **changes})

    def differences(self, other: "ModelArgs") -> Dict[str, Tuple[Any, Any]]:
        """Field -> (this value, other value) for every field that differs."""
        return {
            name: (getattr(self, name), getattr(other, name))
            for name in type(self).model_fields
            if getattr(self, name) != getattr(other, name)
        }
