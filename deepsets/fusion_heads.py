"""The table of fusion heads: what each head is to the config and the builders (torch-free).

    >>> fusion_traits("tmm_deepset").poolings
    ('sum', 'mean', 'max')
    >>> "mmt" in set_fusion_heads()
    False

Everything that depends on the head reads this table: the run config validates ``model.fusion``
against :func:`fusion_names`, its checks read ``poolings`` and ``attention``, and
:func:`deepsets.builders.build_fusion` builds a set head with the builder registered beside its
traits. A new head is one file (its ``FusionHead`` subclass) plus one registration line::

    register_fusion(FusionTraits("gated"), GatedFusion.from_settings)   # deepsets.fusion.registry

A module that registers a head must be imported in every process that builds the model: an
installed package names it under the entry-point group ``deepsets.plugins``
(:mod:`deepsets.registry`), and every process imports it on its first look at this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from deepsets.choices import SET_POOLINGS, TMM_POOLINGS
from deepsets.registry import Registry


@dataclass(frozen=True)
class FusionTraits:
    """How one fusion head fits into a model.

    Attributes:
        name: the head's name, as written in a config (``model.fusion = "deepset"``).
        set_head: it fuses the set of modality vectors (``(B, M, D)`` plus the ``(B, M)``
            presence mask) inside :class:`deepsets.fusion.SetFusion`, so a missing modality
            is a masked slot: ablation by masking and two-tower towers work with it. False
            for a whole-model baseline (``mmt``), which the builder assembles itself.
        poolings: the ``fusion_pooling`` values the head accepts; None when it pools
            otherwise (and ignores ``fusion_pooling``).
        attention: it has attention heads, so ``heads`` must divide ``dim``.

    Raises:
        ValueError: for an empty name or poolings outside ``deepsets.choices.SET_POOLINGS``.
    """

    name: str
    set_head: bool = True
    poolings: Optional[Tuple[str, ...]] = None
    attention: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a fusion head needs a name (found {self.name!r})")
        if self.poolings is not None:
            unknown = [p for p in self.poolings if p not in SET_POOLINGS]
            if not self.poolings or unknown:
                raise ValueError(
                    f"fusion head {self.name!r}: poolings must be some of {SET_POOLINGS} (found {self.poolings})"
                )


_BUILT_IN = (
    FusionTraits("deepset", poolings=SET_POOLINGS),
    FusionTraits("attention"),
    FusionTraits("transformer", attention=True),
    FusionTraits("concat"),
    FusionTraits("tmm_deepset", poolings=TMM_POOLINGS),
    FusionTraits("mmt", set_head=False, attention=True),
)
_HEADS: Registry[FusionTraits] = Registry("fusion head", "heads", ((t.name, t) for t in _BUILT_IN))


def register_fusion_traits(traits: FusionTraits) -> None:
    """Add a head's traits to the table (the same traits again is a no-op). The model side
    registers the builder too: ``deepsets.fusion.register_fusion(traits, build)``.

    Raises:
        ValueError: when another head of that name is registered with different traits.
    """
    _HEADS.register(traits.name, traits, kind_of_value="traits")


def fusion_traits(name: str) -> FusionTraits:
    """The traits of the head ``name``.

    Raises:
        ValueError: for a head nobody registered (nor any installed plug-in), listing the known ones.
    """
    return _HEADS.get(name)


def fusion_names() -> Tuple[str, ...]:
    """Every registered head, in registration order (the choices of ``model.fusion``)."""
    return _HEADS.names()


def set_fusion_heads() -> Tuple[str, ...]:
    """The heads that fuse the set of modality vectors (every head but whole-model baselines)."""
    return tuple(name for name, traits in _HEADS.items() if traits.set_head)
