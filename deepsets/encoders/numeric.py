"""Encoder for ``numeric``: a group of K encoded numbers -> one token.

A missing value is not a silent zero: it is replaced by a learned per-value fill, and the MLP
also sees a 0/1 "observed" indicator per value. Values the schema encodes as ``periodic`` go
through a learned periodic embedding first (Gorishniy et al. 2022, "PLR": ``sin``/``cos`` of
learned frequencies, a linear layer, ReLU), which lets the MLP carve a number's range into
many pieces.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from deepsets.batch import ModalityTensors
from deepsets.encoders.base import Encoded
from deepsets.modality import ModalityInfo


class PeriodicEmbedding(nn.Module):
    """``x (B, P) -> ReLU(Linear([sin(2 pi c x), cos(2 pi c x)])) (B, P, out)``, frequencies
    ``c`` learned per value, started at N(0, sigma^2).

    Args:
        num_values: P.
        frequencies: k frequencies per value.
        out: width of each value's embedding.
        sigma: spread of the starting frequencies (values arrive standardized).
    """

    def __init__(self, num_values: int, frequencies: int = 16, out: int = 16, sigma: float = 1.0) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(num_values, frequencies) * sigma)  # (P, k)
        self.weight = nn.Parameter(
            torch.randn(num_values, 2 * frequencies, out) / math.sqrt(2 * frequencies)
        )  # (P, 2k, out)
        self.bias = nn.Parameter(torch.zeros(num_values, out))  # (P, out)

    def forward(self, x: Tensor) -> Tensor:
        angle = 2 * math.pi * x.unsqueeze(-1) * self.frequencies  # (B, P, k)
        features = torch.cat([angle.sin(), angle.cos()], dim=-1)  # (B, P, 2k)
        return torch.relu(torch.einsum("bpf,pfo->bpo", features, self.weight) + self.bias)  # (B, P, out)


class NumericEncoder(nn.Module):
    """MLP over ``[values with learned fills (periodic ones embedded), observed indicators]``.

    Args:
        num_columns: K, the encoded values of the group.
        dim: token width ``D``.
        hidden: MLP hidden width.
        periodic_columns: which of the K values get a periodic embedding.
    """

    def __init__(self, num_columns: int, dim: int, hidden: int, periodic_columns: Sequence[int] = ()) -> None:
        super().__init__()
        self.fill = nn.Parameter(torch.zeros(num_columns))
        periodic = torch.zeros(num_columns, dtype=torch.bool)
        periodic[list(periodic_columns)] = True
        self.register_buffer("periodic", periodic, persistent=False)  # (K,)
        self.embed = PeriodicEmbedding(len(periodic_columns)) if len(periodic_columns) else None
        width = (
            num_columns + (self.embed.weight.shape[-1] - 1) * len(periodic_columns)
            if self.embed is not None
            else num_columns
        )
        self.mlp = nn.Sequential(nn.Linear(width + num_columns, hidden), nn.GELU(), nn.Linear(hidden, dim))

    @classmethod
    def from_info(cls, info: ModalityInfo, dim: int, ff_dim: int) -> "NumericEncoder":
        return cls(info.num_columns, dim, hidden=ff_dim, periodic_columns=info.periodic_columns)

    def forward(self, modality: ModalityTensors) -> Encoded:
        observed = modality.observed  # (B, K) bool
        values = torch.where(observed, modality.values, self.fill.expand_as(modality.values))  # (B, K)
        if self.embed is not None:
            embedded = self.embed(values[:, self.periodic]).flatten(1)  # (B, P*out)
            values = torch.cat([values[:, ~self.periodic], embedded], dim=1)  # (B, K - P + P*out)
        inputs = torch.cat([values, observed.to(values.dtype)], dim=1)
        return Encoded(self.mlp(inputs), None, modality.present)  # tokens (B, D)
