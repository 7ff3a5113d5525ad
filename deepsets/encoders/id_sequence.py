"""Encoder for ``id_sequence``: ordered ids -> embedded tokens with recency positions."""

from __future__ import annotations

from torch import nn

from deepsets.batch import PAD_ID, ModalityTensors
from deepsets.encoders.base import DEFAULT_MAX_LEN, Encoded, PositionEmbedding, embedding_table
from deepsets.modality import ModalityInfo


class IdSequenceEncoder(nn.Module):
    """Embedding table plus a position embedding counted from the end (0 = most recent).

    Args:
        num_embeddings: table rows (padding and OOV included).
        dim: token width ``D``.
        max_len: positions with their own embedding.
    """

    def __init__(self, num_embeddings: int, dim: int, max_len: int) -> None:
        super().__init__()
        self.embed = embedding_table(num_embeddings, dim, padding_idx=PAD_ID)
        self.position = PositionEmbedding(max_len, dim, from_end=True)

    @classmethod
    def from_info(cls, info: ModalityInfo, dim: int, ff_dim: int) -> "IdSequenceEncoder":
        return cls(info.num_embeddings, dim, info.max_len or DEFAULT_MAX_LEN)

    def forward(self, modality: ModalityTensors) -> Encoded:
        tokens = self.embed(modality.values) + self.position(modality.offsets)  # (N, D)
        return Encoded(tokens, modality.offsets, modality.present)
