"""Masked pooling over the present modalities of each row.

Every function takes `vectors` (B, M, D) and `present` (B, M) bool and reads missing slots only
through `torch.where`, so garbage or NaN there never reaches the result (nor its gradient).
A row with no present modality pools to zeros (finite); `SetFusion` swaps in the empty-set
embedding for such rows anyway.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from deepsets.choices import SET_POOLINGS


def masked_pool(vectors: Tensor, present: Tensor, pooling: str) -> Tuple[Tensor, Optional[Tensor]]:
    """Pool the present modalities of each row.

    Args:
        vectors: (B, M, D) float modality vectors.
        present: (B, M) bool mask.
        pooling: one of "sum", "mean", "max", "min", "median" (lower median, like torch.median).

    Returns:
        (pooled, winners): pooled is (B, D); winners is (B, D) int64 for "max" (the slot that won,
        -1 for rows with nothing present) and None otherwise.

    Raises:
        ValueError: for an unknown pooling.
    """
    if pooling not in SET_POOLINGS:
        raise ValueError(f"pooling must be one of {SET_POOLINGS}, got {pooling!r}")
    mask = present.unsqueeze(-1)  # (B, M, 1)
    any_present = present.any(dim=1, keepdim=True)  # (B, 1)
    if pooling in ("sum", "mean"):
        total = torch.where(mask, vectors, 0.0).sum(dim=1)  # (B, D)
        if pooling == "sum":
            return total, None
        count = present.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
        return total / count, None  # (B, D)
    if pooling == "max":
        filled = torch.where(mask, vectors, float("-inf"))  # (B, M, D)
        best, winners = filled.max(dim=1)  # (B, D), (B, D)
        pooled = torch.where(any_present, best, 0.0)  # (B, D)
        return pooled, torch.where(any_present, winners, -1)  # (B, D), (B, D)
    if pooling == "min":
        filled = torch.where(mask, vectors, float("inf"))  # (B, M, D)
        return torch.where(any_present, filled.amin(dim=1), 0.0), None  # (B, D)
    # median: sort with missing slots pushed to the end (+inf), then take the lower middle of the
    # present ones; index (count - 1) // 2 of the sorted values.
    filled = torch.where(mask, vectors, float("inf"))  # (B, M, D)
    ordered = filled.sort(dim=1).values  # (B, M, D)
    middle = ((present.sum(dim=1) - 1).clamp(min=0) // 2).view(-1, 1, 1)  # (B, 1, 1)
    median = ordered.gather(1, middle.expand(-1, 1, vectors.shape[2])).squeeze(1)  # (B, D)
    return torch.where(any_present, median, 0.0), None  # (B, D)
