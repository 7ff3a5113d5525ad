"""Which encoder each modality kind gets: one registration line per kind.

    build_encoder(ModalityInfo("tags", "id_set", num_embeddings=1002), dim=128, ff_dim=512)

A new kind registers its traits and its encoder together (see docs/layout.md "How the code is laid
out")::

    register_encoder(KindTraits("geo_point", jagged=False, values="floats", summarized=False, needs="dim"),
                     GeoPointEncoder.from_info)
"""

from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from deepsets.encoders.dense import DenseEncoder
from deepsets.encoders.dense_sequence import DenseSequenceEncoder
from deepsets.encoders.embedding import EmbeddingEncoder
from deepsets.encoders.id_sequence import IdSequenceEncoder
from deepsets.encoders.numeric import NumericEncoder
from deepsets.kinds import KindTraits, kind_traits, register_kind
from deepsets.modality import ModalityInfo

EncoderBuilder = Callable[[ModalityInfo, int, int], nn.Module]
"""``(info, dim, ff_dim) -> encoder``: an ``nn.Module`` whose forward takes the modality's
``ModalityTensors`` and returns ``Encoded`` tokens of width ``dim``."""

_ENCODERS: Dict[str, EncoderBuilder] = {
    "dense": DenseEncoder.from_info,
    "dense_sequence": DenseSequenceEncoder.from_info,
    "id_sequence": IdSequenceEncoder.from_info,
    "id_set": EmbeddingEncoder.from_info,
    "categorical": EmbeddingEncoder.from_info,
    "numeric": NumericEncoder.from_info,
}


def register_encoder(traits: KindTraits, build: EncoderBuilder) -> None:
    """Register a modality kind: its traits (``deepsets.kinds``) and the encoder it gets.

    Raises:
        ValueError: when the kind is registered already with other traits.
    """
    register_kind(traits)
    _ENCODERS[traits.name] = build


def build_encoder(info: ModalityInfo, dim: int, ff_dim: int) -> nn.Module:
    """The encoder of ``info``'s kind, projecting to ``dim`` (``ff_dim``: MLP hidden width).

    Raises:
        ValueError: for a kind with no registered encoder.
    """
    kind_traits(info.kind)  # an unknown kind says so, with the known ones (after trying its plug-in)
    try:
        build = _ENCODERS[info.kind]
    except KeyError:
        raise ValueError(
            f"modality {info.name!r}: kind {info.kind!r} has traits but no encoder (register_encoder)"
        ) from None
    return build(info, dim, ff_dim)
