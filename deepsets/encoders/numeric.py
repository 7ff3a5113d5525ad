"""Encoder for ``numeric``: a standardized group of K numbers -> one token.

A missing value is not a silent zero: it is replaced by a learned per-column fill value, and
the MLP also sees a 0/1 "observed" indicator per column.
"""

from __future__ import annotations

import torch
from torch import nn

from deepsets.batch import ModalityTensors
from deepsets.encoders.base import Encoded
from deepsets.modality import ModalityInfo


class NumericEncoder(nn.Module):
    """MLP over ``[values with learned fills, observed indicators]``.

    Args:
        num_columns: K.
        dim: token width ``D``.
        hidden: MLP hidden width.
    """

    def __init__(self, num_columns: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.fill = nn.Parameter(torch.zeros(num_columns))
        self.mlp = nn.Sequential(nn.Linear(2 * num_columns, hidden), nn.GELU(), nn.Linear(hidden, dim))

    @classmethod
    def from_info(cls, info: ModalityInfo, dim: int, ff_dim: int) -> "NumericEncoder":
        return cls(info.num_columns, dim, hidden=ff_dim)

    def forward(self, modality: ModalityTensors) -> Encoded:
        observed = modality.observed  # (B, K) bool
        values = torch.where(observed, modality.values, self.fill.expand_as(modality.values))  # (B, K)
        inputs = torch.cat([values, observed.to(values.dtype)], dim=1)  # (B, 2K)
        return Encoded(self.mlp(inputs), None, modality.present)  # tokens (B, D)
