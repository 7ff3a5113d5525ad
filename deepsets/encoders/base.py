"""What an encoder returns: tokens of width ``D``, jagged or one per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from deepsets.jagged import positions


@dataclass
class Encoded:
    """Encoder output for one modality.

    Attributes:
        tokens: (N, D) for variable-length kinds, (B, D) for fixed-size kinds.
        offsets: (B+1,) row boundaries for variable-length kinds, else None.
        present: (B,) bool.
    """

    tokens: Tensor
    offsets: Optional[Tensor]
    present: Tensor


EMBEDDING_INIT_STD = 0.02
DEFAULT_MAX_LEN = 512
"""Positions with their own embedding for a sequence whose schema sets no ``max_len``."""


def embedding_table(num_embeddings: int, dim: int, padding_idx: Optional[int] = None) -> nn.Embedding:
    """An ``nn.Embedding`` initialized N(0, 0.02^2) (the padding row, if any, zero).

    torch's default N(0, 1) start puts a random vector of norm ~sqrt(D) under every id; Adam
    moves a row by about ``lr`` per step it is seen, so after a few hundred steps the learned
    part is still small next to that noise and the id's vector says little. A small start makes
    what was learned dominate (the same reason transformers start their token tables at 0.02).

    Args:
        num_embeddings: table rows.
        dim: row width.
        padding_idx: a row kept at zero and given no gradient, or None.
    """
    table = nn.Embedding(num_embeddings, dim, padding_idx=padding_idx)
    nn.init.normal_(table.weight, std=EMBEDDING_INIT_STD)
    if padding_idx is not None:
        with torch.no_grad():
            table.weight[padding_idx].zero_()
    return table


class PositionEmbedding(nn.Module):
    """Learned embedding of a token's position in its row (positions past ``max_len - 1`` share
    the last slot).

    Args:
        max_len: number of distinct positions.
        dim: embedding width.
        from_end: count positions from the end of the row (0 = most recent element).
    """

    def __init__(self, max_len: int, dim: int, from_end: bool) -> None:
        super().__init__()
        self.table = embedding_table(max_len, dim)
        self.from_end = from_end

    def forward(self, offsets: Tensor) -> Tensor:
        pos = positions(offsets, self.from_end).clamp(max=self.table.num_embeddings - 1)  # (N,)
        return self.table(pos)  # (N, D)
