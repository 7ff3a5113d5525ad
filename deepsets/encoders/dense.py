"""Encoder for ``dense``: a fixed-size vector per row -> one token of width ``D``."""

from __future__ import annotations

from torch import nn

from deepsets.batch import ModalityTensors
from deepsets.encoders.base import Encoded
from deepsets.modality import ModalityInfo


class DenseEncoder(nn.Module):
    """Linear projection (``hidden`` = 0) or a one-hidden-layer MLP to ``dim``.

    Args:
        in_dim: input vector width.
        dim: output width ``D``.
        hidden: hidden width of the MLP; 0 means a single linear layer.
    """

    def __init__(self, in_dim: int, dim: int, hidden: int = 0) -> None:
        super().__init__()
        self.project = (
            nn.Linear(in_dim, dim)
            if not hidden
            else nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        )

    @classmethod
    def from_info(cls, info: ModalityInfo, dim: int, ff_dim: int) -> "DenseEncoder":
        return cls(info.dim, dim, hidden=0)

    def forward(self, modality: ModalityTensors) -> Encoded:
        return Encoded(self.project(modality.values), None, modality.present)  # tokens (B, D)
