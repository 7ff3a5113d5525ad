"""Encoder for ``categorical`` and ``id_set``: each id -> its row of an embedding table.

A categorical row holds one id (tokens ``(B, D)``, no offsets); an id_set row holds any
number (tokens ``(N, D)`` plus the row offsets). Neither gets a position: a category has none,
and a set's result must not depend on element order (its summarizer is permutation-equivariant
attention plus pooling).
"""

from __future__ import annotations

from torch import nn

from deepsets.batch import PAD_ID, ModalityTensors
from deepsets.encoders.base import Encoded, embedding_table
from deepsets.modality import ModalityInfo


class EmbeddingEncoder(nn.Module):
    """Embedding table lookup (row 0, padding, stays zero).

    Args:
        num_embeddings: table rows (padding and OOV included).
        dim: token width ``D``.
    """

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.embed = embedding_table(num_embeddings, dim, padding_idx=PAD_ID)

    @classmethod
    def from_info(cls, info: ModalityInfo, dim: int, ff_dim: int) -> "EmbeddingEncoder":
        return cls(info.num_embeddings, dim)

    def forward(self, modality: ModalityTensors) -> Encoded:
        return Encoded(self.embed(modality.values), modality.offsets, modality.present)  # tokens (B, D) or (N, D)
