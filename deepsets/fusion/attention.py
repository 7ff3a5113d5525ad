"""Attention pooling: a learned score per modality vector, softmax over the present ones."""

import torch
from torch import Tensor, nn

from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs
from deepsets.fusion.mlp import module_out_dim


class AttentionPoolFusion(FusionHead):
    """sum_m softmax_{present}(w . x_m) x_m, then `mlp` (Ilse et al., 2018, without the gating).

    The score layer has no bias: softmax ignores a shift shared by every modality, so a bias could
    never learn. Missing slots get weight exactly 0; a row with nothing present pools to zeros.

    Args:
        dim: width D of the modality vectors.
        mlp: module applied to the pooled (B, D) vector.

    Raises:
        ValueError: for a non-positive dim.
    """

    def __init__(self, dim: int, mlp: nn.Module):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.score = nn.Linear(dim, 1, bias=False)
        self.mlp = mlp
        self.out_dim = module_out_dim(mlp, dim)

    def forward(self, vectors: Tensor, present: Tensor) -> FusionOutput:
        """Fuse (B, M, D) vectors with (B, M) presence into (B, out_dim)."""
        check_set_inputs(vectors, present, None, self.dim)
        # Clean first: scoring NaN slots and masking afterwards would still poison the weight
        # gradient (0 * NaN in the Linear backward).
        clean = torch.where(present.unsqueeze(-1), vectors, 0.0)  # (B, M, D)
        scores = self.score(clean).squeeze(-1)  # (B, M)
        # Rows with nothing present: any finite scores will do, their weights are zeroed below.
        usable = present | ~present.any(dim=1, keepdim=True)  # (B, M)
        scores = scores.masked_fill(~usable, float("-inf"))  # (B, M)
        weights = torch.where(present, scores.softmax(dim=1), 0.0)  # (B, M)
        pooled = (weights.unsqueeze(-1) * clean).sum(dim=1)  # (B, D)
        return FusionOutput(fused=self.mlp(pooled))  # (B, out_dim)
