"""Encoder for ``id_set``: unordered ids -> embedded tokens, no positions (order-invariant)."""

from __future__ import annotations

from torch import nn

from deepsets.batch import PAD_ID, ModalityTensors
from deepsets.encoders.base import Encoded, embedding_table


class IdSetEncoder(nn.Module):
    """Embedding table only: with no position information, and a summarizer that is itself
    permutation-equivariant (attention) and pooled (mean/max/attention), a set's result does
    not depend on element order.

    Args:
        num_embeddings: table rows (padding and OOV included).
        dim: token width ``D``.
    """

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.embed = embedding_table(num_embeddings, dim, padding_idx=PAD_ID)

    def forward(self, modality: ModalityTensors) -> Encoded:
        return Encoded(self.embed(modality.values), modality.offsets, modality.present)  # tokens (N, D)
