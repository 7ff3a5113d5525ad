"""The table of modality kinds: what each kind of modality looks like to the model (torch-free).

A kind's traits decide how the batch carries it, which encoder and summarizer the builders
give it, and what the spec must tell the model about it. Everything that depends on the kind
reads this table; an unknown kind raises instead of falling through to a default.

    >>> kind_traits("id_sequence").jagged
    True
    >>> kind_traits("numeric").needs
    'num_columns'

A new kind is registered once with :func:`register_kind` (the encoder side does it for you:
``deepsets.encoders.register_encoder(traits, build)``), next to one feature-reading class on
the ``features`` side (``deepsets.features.kinds.register_feature_kind``). docs/layout.md "How the code is
laid out" walks through it.

In other processes (Ray workers, a served model) the module that registers a kind must be
imported too. An installed package does that for every process by naming the module under the
entry-point group ``deepsets.kinds`` (``geo_point = "my_package.geo_point"``): a lookup of a
kind nobody registered imports the module named for it, then looks again. The modules named
under the general group ``deepsets.plugins`` (:mod:`deepsets.registry`) are imported first.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Dict, Literal, Tuple

from deepsets.registry import load_plugins

PLUGIN_GROUP = "deepsets.kinds"
"""Entry-point group: kind name -> the module that registers that kind (both sides)."""

SIZES = ("dim", "num_embeddings", "num_columns")
"""What an encoder can be sized by (fields of :class:`deepsets.modality.ModalityInfo`)."""


@dataclass(frozen=True)
class KindTraits:
    """How one kind of modality travels through the model.

    Attributes:
        name: the kind's name, as written in a schema (``kind = "dense"``).
        jagged: a row holds a variable number of elements (``values`` (N, ...) plus
            ``offsets`` (B+1,)); otherwise exactly one element per row (``values`` (B, ...)).
        values: ``"ids"`` (int64 embedding-table indices, from a vocabulary or hashing) or
            ``"floats"`` (float32 values).
        summarized: the encoder's tokens go through a summarizer (transformer layers and
            pooling) to one vector per row; otherwise the encoder gives that vector itself.
        needs: the size the encoder is built from: ``dim`` (input width), ``num_embeddings``
            (table rows) or ``num_columns`` (a numeric group's width).
        positions: elements carry a position embedding (ordered sequences), so the model needs
            the longest row it will see (``max_len``).

    Raises:
        ValueError: for a ``values`` or ``needs`` outside the choices, or positions or a
            summarizer without jagged rows.
    """

    name: str
    jagged: bool
    values: Literal["ids", "floats"]
    summarized: bool
    needs: str
    positions: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.values not in ("ids", "floats"):
            problems.append(f"values must be 'ids' or 'floats', got {self.values!r}")
        if self.needs not in SIZES:
            problems.append(f"needs must be one of {SIZES}, got {self.needs!r}")
        if self.positions and not self.jagged:
            problems.append("positions need a jagged kind (one element per row has no order)")
        if self.summarized and not self.jagged:
            problems.append("a summarizer needs a jagged kind (one element per row is its own summary)")
        if problems:
            raise ValueError(f"kind {self.name!r}: " + "; ".join(problems))


_KINDS: Dict[str, KindTraits] = {
    t.name: t
    for t in (
        KindTraits("dense", jagged=False, values="floats", summarized=False, needs="dim"),
        KindTraits("dense_sequence", jagged=True, values="floats", summarized=True, needs="dim", positions=True),
        KindTraits("id_sequence", jagged=True, values="ids", summarized=True, needs="num_embeddings", positions=True),
        KindTraits("id_set", jagged=True, values="ids", summarized=True, needs="num_embeddings"),
        KindTraits("categorical", jagged=False, values="ids", summarized=False, needs="num_embeddings"),
        KindTraits("numeric", jagged=False, values="floats", summarized=False, needs="num_columns"),
    )
}


def register_kind(traits: KindTraits) -> None:
    """Add a kind to the table (registering the same traits again is a no-op).

    Raises:
        ValueError: when another kind of that name is registered with different traits.
    """
    known = _KINDS.get(traits.name)
    if known is not None and known != traits:
        raise ValueError(f"kind {traits.name!r} is already registered with other traits: {known}")
    _KINDS[traits.name] = traits


def load_plugin(kind: str) -> bool:
    """Import the module an installed package names for ``kind`` under :data:`PLUGIN_GROUP`;
    True if there was one (importing it registers the kind).

    Raises:
        ValueError: when that module fails to import, naming it.
    """
    load_plugins()  # the modules every installed package names under deepsets.plugins (kinds among them)
    found = [e for e in metadata.entry_points(group=PLUGIN_GROUP) if e.name == kind]
    for entry in found:
        try:
            entry.load()
        except Exception as err:  # noqa: BLE001 - whatever a broken plug-in raises, say which one
            raise ValueError(
                f"modality kind {kind!r}: its plug-in {entry.value!r} ({PLUGIN_GROUP}) failed to import: "
                f"{type(err).__name__}: {err}"
            ) from None
    return bool(found)


def kind_traits(kind: str) -> KindTraits:
    """The traits of ``kind`` (importing its plug-in module first if one is installed).

    Raises:
        ValueError: for a kind nobody registered, listing the known ones.
    """
    if isinstance(kind, str) and kind not in _KINDS:
        load_plugin(kind)
    try:
        return _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown modality kind {kind!r} (known kinds: {', '.join(kind_names())})") from None


def kind_names() -> Tuple[str, ...]:
    """Every registered kind, in registration order."""
    return tuple(_KINDS)
