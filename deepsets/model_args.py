"""``ModelArgs``: the one typed shape of a model's settings, from the run config to the builder.

    args = ModelArgs(dim=64, fusion="deepset", task="binary")
    model = build_model(spec.model_inputs(), args)       # or build_model(inputs, dim=64, ...)
    json.dumps(args.to_dict())                            # what checkpoints and logged models keep
    ModelArgs.from_dict(saved) == args                    # and read back

This module imports no torch: a config, a checkpoint reader or a tuner can hold the settings
without loading the model library. Its defaults are the only ones: the run config's ``[model]``
and ``[task]`` sections take theirs from here. So are its rules across fields (heads dividing
``dim``, the head's poolings, ``num_outputs`` for the task, the two-tower rules,
:data:`MODEL_RULES`): the run config checks its sections with them, naming its own fields, and
a ``ModelArgs`` holds only settings that pass them.
"""

from __future__ import annotations

from dataclasses import InitVar, asdict, dataclass, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from deepsets.choices import SEQUENCE_POOLINGS, SET_POOLINGS
from deepsets.fusion_heads import fusion_names, fusion_traits
from deepsets.task_kinds import task_names, task_traits

TWO_TOWER_FIELDS = ("query_modalities", "item_modalities", "temperature", "shortcuts")

LEAST: Dict[str, int] = {"dim": 1, "heads": 1, "fusion_layers": 1, "num_outputs": 1, "layers": 0, "ff_dim": 0}
"""The smallest value of each integer setting (the run config's lower bounds are these)."""

Problem = Tuple[str, str]
"""``(where, message)``: the field a problem is reported on, named as the caller names it."""
Names = Callable[[str], str]
"""A ``ModelArgs`` field name -> how messages name it (a run config says ``model.dim`` for ``dim``)."""


def _plain(field: str) -> str:
    return field


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


@dataclass(frozen=True)
class ModelArgs:
    """Everything :func:`deepsets.builders.build_model` needs besides the modalities.

    Attributes:
        dim: shared width ``D`` of every modality vector.
        layers: transformer layers per variable-length modality (0 = pooling only); for
            ``fusion="mmt"`` the single transformer has ``fusion_layers`` layers.
        heads: attention heads everywhere.
        ff_dim: feed-forward width; 0 means ``4 * dim`` (:attr:`feed_forward_dim`), as in a
            run config. A saved ``None`` (checkpoints of earlier versions) reads as 0.
        pooling: pooling of a modality's elements (``deepsets.choices.SEQUENCE_POOLINGS``).
        fusion: the fusion head (``deepsets.fusion_heads.fusion_names()``).
        fusion_layers: transformer fusion / MMT layers.
        fusion_pooling: pooling of the deepset heads (``deepsets.choices.SET_POOLINGS``).
        dropout: dropout inside transformers and MLPs.
        modality_dropout: rate at which whole modalities are dropped in training.
        task: what the model predicts (``deepsets.task_kinds.task_names()``).
        num_outputs: labels / classes / targets (unused by two_tower).
        query_modalities: two_tower only: the query tower's modalities.
        item_modalities: two_tower only: the item tower's modalities.
        temperature: two_tower only: the starting softmax temperature (it is learned).
        shortcuts: two_tower only: (query modality, item modality) pairs whose own vectors
            also meet in the score (``deepsets.two_tower``: wide-and-deep style shortcuts).
        names: not kept: how the problems raised name the fields (a run config passes its
            own locations, ``model.dim``, ``task.kind``...).

    Raises:
        ModelArgsError: (a ValueError) naming every field outside its choices or range, or,
            when every field is valid on its own, every rule of :data:`MODEL_RULES` broken.
    """

    dim: int = 128
    layers: int = 1
    heads: int = 4
    ff_dim: int = 0
    pooling: str = "mean"
    fusion: str = "transformer"
    fusion_layers: int = 2
    fusion_pooling: str = "mean"
    dropout: float = 0.0
    modality_dropout: float = 0.0
    task: str = "binary"
    num_outputs: int = 1
    query_modalities: Tuple[str, ...] = ()
    item_modalities: Tuple[str, ...] = ()
    temperature: float = 0.07
    shortcuts: Tuple[Tuple[str, str], ...] = ()
    names: InitVar[Optional[Names]] = None

    def __post_init__(self, names: Optional[Names]) -> None:
        for name in ("query_modalities", "item_modalities"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "shortcuts", tuple(tuple(pair) for pair in self.shortcuts))
        if self.ff_dim is None:  # how earlier checkpoints wrote "4 * dim"
            object.__setattr__(self, "ff_dim", 0)
        name = names or _plain
        problems: List[Problem] = []
        for field, value, choices in (
            ("pooling", self.pooling, SEQUENCE_POOLINGS),
            ("fusion", self.fusion, fusion_names()),
            ("fusion_pooling", self.fusion_pooling, SET_POOLINGS),
            ("task", self.task, task_names()),
        ):
            if value not in choices:
                problems.append((name(field), f"must be one of {', '.join(choices)} (found {value!r})"))
        for field, least in LEAST.items():
            if getattr(self, field) < least:
                problems.append((name(field), f"must be >= {least} (found {getattr(self, field)})"))
        bad_pairs = [list(pair) for pair in self.shortcuts if len(pair) != 2]
        if bad_pairs:
            problems.append((name("shortcuts"), f"must be (query modality, item modality) pairs (found {bad_pairs})"))
        if not problems:  # the rules across fields read only valid fields
            problems = model_problems({f.name: getattr(self, f.name) for f in fields(self)}, name)
        if problems:
            raise ModelArgsError(problems)

    @property
    def feed_forward_dim(self) -> int:
        """The feed-forward width the layers get: ``ff_dim``, or ``4 * dim`` when it is 0."""
        return self.ff_dim or 4 * self.dim

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON values; the two-tower fields only for two_tower (as checkpoints always held)."""
        out = asdict(self)
        for name in ("query_modalities", "item_modalities"):
            out[name] = list(out[name])
        out["shortcuts"] = [list(pair) for pair in self.shortcuts]
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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model arguments: unknown {unknown} (known: {', '.join(sorted(known))})")
        return cls(**data)

    def differences(self, other: "ModelArgs") -> Dict[str, Tuple[Any, Any]]:
        """Field -> (this value, other value) for every field that differs."""
        return {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }
