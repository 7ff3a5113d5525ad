"""Encoder for ``dense_sequence``: each vector of a row -> a token (plus its position)."""

from __future__ import annotations

from torch import nn

from deepsets.batch import ModalityTensors
from deepsets.encoders.base import DEFAULT_MAX_LEN, Encoded, PositionEmbedding
from deepsets.modality import ModalityInfo


class DenseSequenceEncoder(nn.Module):
    """Per-vector linear projection to ``dim`` plus a learned position embedding.

    Args:
        in_dim: width of each vector.
        dim: token width ``D``.
        max_len: positions with their own embedding.
        from_end: count positions from the row's last vector (0 = most recent) instead of its first.
    """

    def __init__(self, in_dim: int, dim: int, max_len: int, from_end: bool = False) -> None:
        super().__init__()
        self.project = nn.Linear(in_dim, dim)
        self.position = PositionEmbedding(max_len, dim, from_end=from_end)

    @classmethod
    def from_info(cls, info: ModalityInfo, dim: int, ff_dim: int) -> "DenseSequenceEncoder":
        return cls(info.dim, dim, info.max_len or DEFAULT_MAX_LEN, from_end=info.positions_from_end)

    def forward(self, modality: ModalityTensors) -> Encoded:
        tokens = self.project(modality.values) + self.position(modality.offsets)  # (N, D)
        return Encoded(tokens, modality.offsets, modality.present)
