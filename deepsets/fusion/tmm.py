"""Adapter running torchmultimodal's DeepsetFusionModule behind the FusionHead interface.

torchmultimodal's module (torchmultimodal.modules.fusions.deepset_fusion) takes a Dict[str, Tensor]
of (B, D) embeddings, stacks them in `sorted()` key order, ALWAYS L2-normalizes each vector
(F.normalize(p=2, dim=2); there is no switch to turn that off), calls
`pooling_function(stacked, dim=1)` (taking `.values` when the result is a tuple, so torch.max and
torch.median work as they are), then its MLP. It has no notion of a missing modality, so this
adapter zero-fills missing slots: like ConcatFusion it breaks invariant 3 (a missing modality is a
zero vector, which "mean" counts and "max" can pick). Kept as a reference implementation and for
the equivalence test against our DeepSetFusion.
"""

from typing import Sequence

import torch
from torch import Tensor, nn

from deepsets.choices import TMM_POOLINGS
from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs
from deepsets.fusion.mlp import module_out_dim

POOLING_FUNCTIONS = {"sum": torch.sum, "mean": torch.mean, "max": torch.max}  # what DeepsetsFusionModule calls


class TorchMultimodalDeepset(FusionHead):
    """torchmultimodal DeepsetFusionModule on zero-filled modality vectors.

    Args:
        names: modality names, unique and sorted (slot m of `vectors` is names[m]).
        dim: width D of the modality vectors.
        pooling: "sum", "mean" or "max".
        mlp: module applied to the pooled (B, D) vector.

    Raises:
        ValueError: for unsorted/duplicate/empty names, a non-positive dim or an unknown pooling.
        ImportError: if torchmultimodal is not installed (it is imported here, not at module load).
    """

    def __init__(self, names: Sequence[str], dim: int, pooling: str, mlp: nn.Module):
        super().__init__()
        names = list(names)
        if not names or names != sorted(set(names)):
            raise ValueError(f"names must be non-empty, unique and sorted, got {names}")
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if pooling not in TMM_POOLINGS:
            raise ValueError(f"pooling must be one of {TMM_POOLINGS}, got {pooling!r}")
        from torchmultimodal.modules.fusions.deepset_fusion import DeepsetFusionModule

        self.names = names
        self.dim = dim
        self.pooling = pooling
        self.fusion = DeepsetFusionModule({name: dim for name in names}, mlp, POOLING_FUNCTIONS[pooling])
        self.out_dim = module_out_dim(mlp, dim)

    def forward(self, vectors: Tensor, present: Tensor) -> FusionOutput:
        """Fuse (B, M, D) vectors with (B, M) presence into (B, out_dim); missing = zeros."""
        check_set_inputs(vectors, present, len(self.names), self.dim)
        filled = torch.where(present.unsqueeze(-1), vectors, 0.0)  # (B, M, D)
        embeddings = {name: filled[:, m] for m, name in enumerate(self.names)}  # name -> (B, D)
        return FusionOutput(fused=self.fusion(embeddings))  # (B, out_dim)

    def extra_repr(self) -> str:
        return f"names={self.names}, pooling={self.pooling!r}"
