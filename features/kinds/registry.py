"""Which class reads each modality kind from Parquet: one registration line per kind.

The schema's ``[[modality]]`` tables are validated by the class registered for their ``kind``,
so the kinds a schema may use are exactly the registered ones. A new kind registers its class
once (its traits must be registered on the model side first, ``deepsets.encoders.register_encoder``)::

    register_feature_kind(GeoPointFeature)       # a BaseFeature with kind: Literal["geo_point"]
"""

from __future__ import annotations

import typing
from typing import Dict, Tuple, Type

from deepsets.features.kinds.base import BaseFeature
from deepsets.features.kinds.categorical import CategoricalFeature
from deepsets.features.kinds.dense import DenseFeature
from deepsets.features.kinds.dense_sequence import DenseSequenceFeature
from deepsets.features.kinds.id_sequence import IdSequenceFeature
from deepsets.features.kinds.id_set import IdSetFeature
from deepsets.features.kinds.numeric import NumericFeature
from deepsets.kinds import kind_traits, load_plugin


def kind_of(cls: Type[BaseFeature]) -> str:
    """The kind a feature class declares (``kind: Literal["dense"]``).

    Raises:
        ValueError: when the class has no single literal ``kind`` field.
    """
    field = cls.model_fields.get("kind")
    names = typing.get_args(field.annotation) if field is not None else ()
    if len(names) != 1 or not isinstance(names[0], str):
        raise ValueError(f'{cls.__name__} must declare its kind as a field `kind: Literal["<name>"]`')
    return names[0]


_FEATURES: Dict[str, Type[BaseFeature]] = {
    kind_of(cls): cls
    for cls in (DenseFeature, DenseSequenceFeature, IdSequenceFeature, IdSetFeature, CategoricalFeature, NumericFeature)
}


def register_feature_kind(cls: Type[BaseFeature]) -> None:
    """Let schemas use ``cls``'s kind.

    Raises:
        ValueError: when the class declares no kind, the kind has no traits on the model side
            (``deepsets.kinds``), or another class already reads that kind.
    """
    name = kind_of(cls)
    kind_traits(name)
    known = _FEATURES.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"kind {name!r} is already read by {known.__name__}")
    _FEATURES[name] = cls


def feature_class(kind: str) -> Type[BaseFeature]:
    """The class that reads ``kind`` (importing its plug-in module first if one is installed:
    ``deepsets.kinds.PLUGIN_GROUP``).

    Raises:
        KeyError: for a kind no class was registered for.
    """
    if isinstance(kind, str) and kind not in _FEATURES:
        load_plugin(kind)
    return _FEATURES[kind]


def feature_kinds() -> Tuple[str, ...]:
    """Every kind a schema may use, sorted."""
    return tuple(sorted(_FEATURES))
