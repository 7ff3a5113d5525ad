"""SetFusion: the wrapper every model uses around a fusion head (modality dropout, empty set)."""

from typing import Callable

import torch
from torch import Tensor, nn

from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs


class SetFusion(nn.Module):
    """Modality dropout during training, the head, then a learned embedding for empty sets.

    In training mode each present modality of each row is dropped (treated as missing) with
    probability `modality_dropout`, drawn with `torch.rand` so it follows the global seed. Rows left
    with no present modality get the learned `empty` vector instead of the head's output; their
    winners, if any, are -1. In eval mode nothing is dropped.

    Args:
        head: the fusion head; its `out_dim` becomes this module's `out_dim`.
        num_modalities: number of slots M.
        dim_in: width D of the modality vectors.
        modality_dropout: probability of dropping a present modality in training, in [0, 1].

    Raises:
        ValueError: for non-positive sizes or modality_dropout outside [0, 1].
    """

    def __init__(self, head: FusionHead, num_modalities: int, dim_in: int, modality_dropout: float = 0.0):
        super().__init__()
        if num_modalities <= 0 or dim_in <= 0:
            raise ValueError(f"sizes must be positive, got num_modalities={num_modalities} dim_in={dim_in}")
        if not 0.0 <= modality_dropout <= 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1], got {modality_dropout}")
        self.head = head
        self.num_modalities = num_modalities
        self.dim_in = dim_in
        self.modality_dropout = modality_dropout
        self.out_dim = head.out_dim
        self.empty = nn.Parameter(torch.randn(head.out_dim) * 0.02)  # (out_dim,)

    def forward(self, vectors: Tensor, present: Tensor) -> FusionOutput:
        """Fuse (B, M, D) vectors with (B, M) presence into (B, out_dim)."""
        check_set_inputs(vectors, present, self.num_modalities, self.dim_in)
        if self.training and self.modality_dropout > 0.0:
            keep = torch.rand(present.shape, device=present.device) >= self.modality_dropout  # (B, M)
            present = present & keep  # (B, M)
        out = self.head(vectors, present)
        empty_row = ~present.any(dim=1, keepdim=True)  # (B, 1)
        fused = torch.where(empty_row, self.empty.to(out.fused.dtype), out.fused)  # (B, out_dim)
        winners = None if out.winners is None else torch.where(empty_row, -1, out.winners)  # (B, D)
        return FusionOutput(fused=fused, winners=winners)

    def fuse_compact(self, tokens: Tensor, slots: Tensor) -> Tensor:
        """The eval-mode output for rows whose present modalities are given compactly.

        Equal to ``forward(vectors, present).fused`` with ``present`` true exactly at
        ``slots``. A head with ``forward_compact`` (the transformer) runs on the J tokens alone;
        any other head gets them scattered back into M slots.

        Args:
            tokens: (B, J, D) the present vectors (J = 0: nothing present).
            slots: (B, J) int64 modality slots, distinct within a row.

        Returns:
            (B, out_dim).
        """
        batch, j, dim = tokens.shape
        if j == 0:
            return self.empty.expand(batch, -1)  # (B, out_dim)
        compact = getattr(self.head, "forward_compact", None)
        if compact is not None:
            return compact(tokens, slots)
        vectors = tokens.new_zeros(batch, self.num_modalities, dim).scatter_(
            1, slots.unsqueeze(-1).expand(batch, j, dim), tokens
        )  # (B, M, D)
        present = torch.zeros(batch, self.num_modalities, dtype=torch.bool, device=tokens.device).scatter_(
            1, slots, True
        )  # (B, M)
        return self.head(vectors, present).fused

    def compact_fuser(self, vectors: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """``fuse(rows (B,), slots (B, J)) -> (B, out_dim)``: :meth:`fuse_compact` of
        ``vectors[rows]`` at ``slots``, for fusing the rows of ``vectors`` (N, M, D) under many
        subsets. A head with its own ``compact_fuser`` (the transformer) does once per row what
        does not depend on the subset."""
        own = getattr(self.head, "compact_fuser", None)
        head_fuse = own(vectors) if own is not None else None

        def fuse(rows: Tensor, slots: Tensor) -> Tensor:
            if head_fuse is None or slots.shape[1] == 0:
                return self.fuse_compact(vectors[rows.unsqueeze(1), slots], slots)
            return head_fuse(rows, slots)

        return fuse

    def extra_repr(self) -> str:
        return f"num_modalities={self.num_modalities}, dim_in={self.dim_in}, modality_dropout={self.modality_dropout}"
