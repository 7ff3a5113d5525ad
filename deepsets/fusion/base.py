"""The interface every fusion head implements, and the input checks they share.

A fusion head turns the SET of per-modality vectors of each row into one vector. The set is given
as a dense slot tensor plus a presence mask, modalities in sorted-name order:

    vectors  (B, M, D)  float; slot m of a row holds modality m's vector when present[b, m]
    present  (B, M)     bool;  False = the modality is missing for that row

A missing slot may hold anything (zeros, garbage, NaN): heads must never read it in a way that
reaches the output, which is why they select with `torch.where` instead of multiplying by the mask
(0 * NaN is NaN).
"""

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn


@dataclass
class FusionOutput:
    """What a fusion head returns.

    Attributes:
        fused: (B, D_out) the fused embedding of each row.
        winners: (B, D) int64, only for max pooling: the slot (0..M-1, sorted-modality order) whose
            value won the max, per row and dimension; -1 where the row has no present modality.
    """

    fused: Tensor
    winners: Optional[Tensor] = None


class FusionHead(nn.Module):
    """Base class: `forward(vectors, present) -> FusionOutput`, with `out_dim` set by the subclass."""

    out_dim: int

    def forward(self, vectors: Tensor, present: Tensor) -> FusionOutput:  # pragma: no cover
        raise NotImplementedError


def check_set_inputs(vectors: Tensor, present: Tensor, num_modalities: Optional[int], dim: int) -> None:
    """Raise ValueError unless `vectors` is (B, M, dim) float and `present` is (B, M) bool.

    Args:
        vectors: (B, M, D) modality vectors.
        present: (B, M) presence mask.
        num_modalities: expected M, or None when any M is fine.
        dim: expected D.

    Raises:
        ValueError: on a wrong rank, shape or dtype, naming the values found.
    """
    if vectors.dim() != 3 or not vectors.is_floating_point():
        raise ValueError(f"vectors must be a float (B, M, D) tensor, got {vectors.dtype} {tuple(vectors.shape)}")
    if present.dtype != torch.bool or tuple(present.shape) != tuple(vectors.shape[:2]):
        raise ValueError(
            f"present must be a bool (B, M) = {tuple(vectors.shape[:2])} tensor, "
            f"got {present.dtype} {tuple(present.shape)}"
        )
    if num_modalities is not None and vectors.shape[1] != num_modalities:
        raise ValueError(f"expected {num_modalities} modality slots, got {vectors.shape[1]}")
    if vectors.shape[2] != dim:
        raise ValueError(f"expected vectors of width {dim}, got {vectors.shape[2]}")
