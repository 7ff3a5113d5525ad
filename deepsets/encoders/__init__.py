"""One encoder per modality kind, each projecting to a shared width ``D``; the registry says
which kind gets which (``build_encoder``, ``register_encoder``)."""

from deepsets.encoders.base import Encoded
from deepsets.encoders.dense import DenseEncoder
from deepsets.encoders.dense_sequence import DenseSequenceEncoder
from deepsets.encoders.embedding import EmbeddingEncoder
from deepsets.encoders.id_sequence import IdSequenceEncoder
from deepsets.encoders.numeric import NumericEncoder
from deepsets.encoders.registry import build_encoder, register_encoder

__all__ = [
    "DenseEncoder",
    "DenseSequenceEncoder",
    "EmbeddingEncoder",
    "Encoded",
    "IdSequenceEncoder",
    "NumericEncoder",
    "build_encoder",
    "register_encoder",
]
