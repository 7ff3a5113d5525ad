"""Which module each set-fusion head is built from: one registration line per head.

    build = fusion_builder("deepset")
    head = build(FusionSettings(names=("image", "tags"), dim=64, pooling="max"))   # a FusionHead

A new head registers its traits (``deepsets.fusion_heads``) and its builder together::

    register_fusion(FusionTraits("gated"), GatedFusion.from_settings)

where ``from_settings(settings: FusionSettings) -> FusionHead`` reads what it needs and sets
``out_dim`` (``deepsets.builders.build_fusion`` wraps it in a ``SetFusion``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from torch import nn

from deepsets.fusion.attention import AttentionPoolFusion
from deepsets.fusion.base import FusionHead
from deepsets.fusion.concat import ConcatFusion
from deepsets.fusion.deepset import DeepSetFusion
from deepsets.fusion.mlp import mlp
from deepsets.fusion.tmm import TorchMultimodalDeepset
from deepsets.fusion.transformer import TransformerFusion
from deepsets.fusion_heads import FusionTraits, fusion_names, fusion_traits, register_fusion_traits
from deepsets.registry import Registry


@dataclass(frozen=True)
class FusionSettings:
    """What a head is built from (each head reads the fields it uses).

    Attributes:
        names: modality names, unique and sorted (the slot order of the vectors); M = len(names).
        dim: width D of the modality vectors and of the fused embedding.
        layers: encoder layers (attention heads).
        heads: attention heads; divides ``dim``.
        ff_dim: feed-forward width of attention layers.
        pooling: pooling of the set (one of the head's ``FusionTraits.poolings``).
        hidden: hidden widths of the MLP after pooling; None means ``(dim,)``.
        dropout: dropout in that MLP or inside attention layers.
    """

    names: Tuple[str, ...]
    dim: int
    layers: int = 2
    heads: int = 4
    ff_dim: Optional[int] = None
    pooling: str = "mean"
    hidden: Optional[Tuple[int, ...]] = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "hidden", (self.dim,) if self.hidden is None else tuple(self.hidden))
        if self.ff_dim is None:
            object.__setattr__(self, "ff_dim", 4 * self.dim)

    def mlp(self, in_dim: int) -> nn.Module:
        """The MLP after pooling: ``in_dim`` -> ``hidden`` -> ``dim``."""
        return mlp(in_dim, self.hidden, self.dim, dropout=self.dropout)


FusionBuilder = Callable[[FusionSettings], FusionHead]
"""``settings -> head``: a :class:`deepsets.fusion.FusionHead` over ``len(settings.names)`` slots."""

_BUILDERS: Registry[FusionBuilder] = Registry(
    "set-head builder",
    "builders",
    (
        ("deepset", lambda s: DeepSetFusion(s.dim, s.pooling, s.mlp(s.dim))),
        ("attention", lambda s: AttentionPoolFusion(s.dim, s.mlp(s.dim))),
        (
            "transformer",
            lambda s: TransformerFusion(s.dim, len(s.names), s.layers, s.heads, s.ff_dim, dropout=s.dropout),
        ),
        ("concat", lambda s: ConcatFusion(s.dim, len(s.names), s.mlp(len(s.names) * s.dim))),
        ("tmm_deepset", lambda s: TorchMultimodalDeepset(list(s.names), s.dim, s.pooling, s.mlp(s.dim))),
    ),
)


def register_fusion(traits: FusionTraits, build: FusionBuilder) -> None:
    """Register a set-fusion head: its traits (``deepsets.fusion_heads``) and its builder (the
    builder of a head registered again with the same traits is replaced).

    Raises:
        ValueError: for traits that are not a set head, or a name registered already with
            other traits.
    """
    if not traits.set_head:
        raise ValueError(
            f"fusion head {traits.name!r}: only set heads (set_head=True) are built from a registered builder"
        )
    register_fusion_traits(traits)
    _BUILDERS.register(traits.name, build, replace=True)


def fusion_builder(name: str) -> FusionBuilder:
    """The builder of the set head ``name``.

    Raises:
        ValueError: for an unknown head (listing the known ones) or one with no builder.
    """
    fusion_traits(name)  # an unknown head says so, with the known ones
    build = _BUILDERS.find(name)
    if build is None:
        raise ValueError(
            f"fusion head {name!r} has no set-head builder (known: {', '.join(n for n in fusion_names() if n in _BUILDERS)})"
        )
    return build
