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

A module that registers a head must be imported in every process that builds the model (a Ray
worker imports the modules named by the training function's own imports).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from deepsets.choices import SET_POOLINGS, TMM_POOLINGS


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


_HEADS: Dict[str, FusionTraits] = {
    t.name: t
    for t in (
        FusionTraits("deepset", poolings=SET_POOLINGS),
        FusionTraits("attention"),
        FusionTraits("transformer", attention=True),
        FusionTraits("concat"),
        FusionTraits("tmm_deepset", poolings=TMM_POOLINGS),
        FusionTraits("mmt", set_head=False, attention=True),
    )
}


def register_fusion_traits(traits: FusionTraits) -> None:
    """Add a head's traits to the table (the same traits again is a no-op). The model side
    registers the builder too: ``deepsets.fusion.register_fusion(traits, build)``.

    Raises:
        ValueError: when another head of that name is registered with different traits.
    """
    known = _HEADS.get(traits.name)
    if known is not None and known != traits:
        raise ValueError(f"fusion head {traits.name!r} is already registered with other traits: {known}")
    _HEADS[traits.name] = traits


def fusion_traits(name: str) -> FusionTraits:
    """The traits of the head ``name``.

    Raises:
        ValueError: for a head nobody registered, listing the known ones.
    """
    try:
        return _HEADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown fusion head {name!r} (known heads: {', '.join(fusion_names())})") from None


def fusion_names() -> Tuple[str, ...]:
    """Every registered head, in registration order (the choices of ``model.fusion``)."""
    return tuple(_HEADS)


def set_fusion_heads() -> Tuple[str, ...]:
    """The heads that fuse the set of modality vectors (every head but whole-model baselines)."""
    return tuple(name for name, traits in _HEADS.items() if traits.set_head)
