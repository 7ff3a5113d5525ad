"""What an encoder returns: tokens of width ``D``, jagged or one per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
        self.table = nn.Embedding(max_len, dim)
        self.from_end = from_end

    def forward(self, offsets: Tensor) -> Tensor:
        pos = positions(offsets, self.from_end).clamp(max=self.table.num_embeddings - 1)  # (N,)
        return self.table(pos)  # (N, D)
