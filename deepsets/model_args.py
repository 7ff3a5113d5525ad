"""``ModelArgs``: the one typed shape of a model's settings, from the run config to the builder.

    args = ModelArgs(dim=64, fusion="deepset", task="binary")
    model = build_model(spec.model_inputs(), args)       # or build_model(inputs, dim=64, ...)
    json.dumps(args.to_dict())                            # what checkpoints and logged models keep
    ModelArgs.from_dict(saved) == args                    # and read back

This module imports no torch: a config, a checkpoint reader or a tuner can hold the settings
without loading the model library. Its defaults are the only ones: the run config's ``[model]``
and ``[task]`` sections take theirs from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Tuple

from deepsets.choices import SEQUENCE_POOLINGS, SET_POOLINGS
from deepsets.fusion_heads import fusion_names
from deepsets.task_kinds import task_names

TWO_TOWER_FIELDS = ("query_modalities", "item_modalities", "temperature", "shortcuts")


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

    Raises:
        ValueError: naming every field outside its choices or range.
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

    def __post_init__(self) -> None:
        for name in ("query_modalities", "item_modalities"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "shortcuts", tuple(tuple(pair) for pair in self.shortcuts))
        if self.ff_dim is None:  # how earlier checkpoints wrote "4 * dim"
            object.__setattr__(self, "ff_dim", 0)
        problems = []
        for name, value, choices in (
            ("pooling", self.pooling, SEQUENCE_POOLINGS),
            ("fusion", self.fusion, fusion_names()),
            ("fusion_pooling", self.fusion_pooling, SET_POOLINGS),
            ("task", self.task, task_names()),
        ):
            if value not in choices:
                problems.append(f"{name} must be one of {', '.join(choices)} (found {value!r})")
        for name in ("dim", "heads", "fusion_layers", "num_outputs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (found {getattr(self, name)})")
        if self.layers < 0 or self.ff_dim < 0:
            problems.append(f"layers and ff_dim must be >= 0 (found {self.layers}, {self.ff_dim})")
        bad_pairs = [list(pair) for pair in self.shortcuts if len(pair) != 2]
        if bad_pairs:
            problems.append(f"shortcuts must be (query modality, item modality) pairs (found {bad_pairs})")
        if self.shortcuts and self.task != "two_tower":
            problems.append(f"shortcuts are used only by two_tower (task {self.task!r})")
        if problems:
            raise ValueError("model arguments: " + "; ".join(problems))

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
