"""DeepSet fusion: pool the present modality vectors, then an MLP (Zaheer et al., 2017)."""

import torch
from torch import Tensor, nn

from deepsets.choices import SET_POOLINGS
from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs
from deepsets.fusion.mlp import module_out_dim
from deepsets.fusion.pooling import masked_pool


class DeepSetFusion(FusionHead):
    """rho(pool_{m present} x_m): symmetric pooling over present modalities only, then `mlp`.

    Order of modalities cannot matter (pooling is symmetric) and a missing modality is absent from
    the pool, not a zero vector: with "mean" a missing slot does not count in the denominator,
    with "max"/"min"/"median" it cannot be chosen. (With "sum", a present all-zero vector and a
    missing one give the same pool; that is what a sum is.)

    Args:
        dim: width D of the modality vectors.
        pooling: "sum", "mean", "max", "min" or "median" (lower median).
        mlp: module applied to the pooled (B, D) vector, e.g. `deepsets.fusion.mlp(...)`.

    Raises:
        ValueError: for a non-positive dim or an unknown pooling.
    """

    def __init__(self, dim: int, pooling: str, mlp: nn.Module):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if pooling not in SET_POOLINGS:
            raise ValueError(f"pooling must be one of {SET_POOLINGS}, got {pooling!r}")
        self.dim = dim
        self.pooling = pooling
        self.mlp = mlp
        self.out_dim = module_out_dim(mlp, dim)

    def forward(self, vectors: Tensor, present: Tensor) -> FusionOutput:
        """Fuse (B, M, D) vectors with (B, M) presence into (B, out_dim); winners only for "max"."""
        check_set_inputs(vectors, present, None, self.dim)
        pooled, winners = masked_pool(vectors, present, self.pooling)  # (B, D), (B, D) or None
        return FusionOutput(fused=self.mlp(pooled), winners=winners)  # (B, out_dim)

    def forward_compact(self, tokens: Tensor, slots: Tensor) -> Tensor:
        """Fuse rows given as their present vectors only (``tokens`` (B, J, D), J >= 1; the
        slots do not matter to a symmetric pool): :meth:`forward`'s fused output, without
        scattering into M slots and masking. Used by ablations."""
        if self.pooling == "mean":
            return self.mlp(tokens.mean(dim=1))  # (B, out_dim)
        if self.pooling == "sum":
            return self.mlp(tokens.sum(dim=1))
        pooled, _ = masked_pool(
            tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device), self.pooling
        )  # (B, D)
        return self.mlp(pooled)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, pooling={self.pooling!r}"
