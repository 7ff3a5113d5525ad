"""Concatenation ("late fusion") baseline: zero-fill missing modalities, flatten, MLP."""

import torch
from torch import Tensor, nn

from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs
from deepsets.fusion.mlp import module_out_dim


class ConcatFusion(FusionHead):
    """mlp([x_1; x_2; ...; x_M]) with missing modalities replaced by zeros.

    The baseline the set heads are measured against. It deliberately breaks invariant 3 (a missing
    modality becomes a zero vector pretending to be data, indistinguishable from a present zero)
    and invariant 2 (slot m always feeds the same input columns, so the order matters). Garbage or
    NaN in missing slots still has no influence: they are zero-filled with `torch.where`.

    Args:
        dim: width D of the modality vectors.
        num_modalities: number of slots M.
        mlp: module applied to the flattened (B, M*D) vector.

    Raises:
        ValueError: for non-positive sizes.
    """

    def __init__(self, dim: int, num_modalities: int, mlp: nn.Module):
        super().__init__()
        if dim <= 0 or num_modalities <= 0:
            raise ValueError(f"sizes must be positive, got dim={dim} num_modalities={num_modalities}")
        self.dim = dim
        self.num_modalities = num_modalities
        self.mlp = mlp
        self.out_dim = module_out_dim(mlp, num_modalities * dim)

    def forward(self, vectors: Tensor, present: Tensor) -> FusionOutput:
        """Fuse (B, M, D) vectors with (B, M) presence into (B, out_dim)."""
        check_set_inputs(vectors, present, self.num_modalities, self.dim)
        filled = torch.where(present.unsqueeze(-1), vectors, 0.0)  # (B, M, D)
        return FusionOutput(fused=self.mlp(filled.flatten(1)))  # (B, out_dim)
