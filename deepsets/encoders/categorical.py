"""Encoder for ``categorical``: one id per row -> one embedded token."""

from __future__ import annotations

from torch import nn

from deepsets.batch import PAD_ID, ModalityTensors
from deepsets.encoders.base import Encoded, embedding_table


class CategoricalEncoder(nn.Module):
    """Embedding table lookup.

    Args:
        num_embeddings: table rows (padding and OOV included).
        dim: token width ``D``.
    """

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.embed = embedding_table(num_embeddings, dim, padding_idx=PAD_ID)

    def forward(self, modality: ModalityTensors) -> Encoded:
        return Encoded(self.embed(modality.values), None, modality.present)  # tokens (B, D)
