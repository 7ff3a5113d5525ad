"""One encoder per modality kind, each projecting to a shared width ``D``."""

from deepsets.encoders.base import Encoded
from deepsets.encoders.categorical import CategoricalEncoder
from deepsets.encoders.dense import DenseEncoder
from deepsets.encoders.dense_sequence import DenseSequenceEncoder
from deepsets.encoders.id_sequence import IdSequenceEncoder
from deepsets.encoders.id_set import IdSetEncoder
from deepsets.encoders.numeric import NumericEncoder

__all__ = [
    "CategoricalEncoder",
    "DenseEncoder",
    "DenseSequenceEncoder",
    "Encoded",
    "IdSequenceEncoder",
    "IdSetEncoder",
    "NumericEncoder",
]
