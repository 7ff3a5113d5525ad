"""Per-modality summarizer: transformer layers over a row's elements, then masked pooling.

Tokens stay jagged (flat ``(N, D)`` + offsets) throughout. Projections, feed-forward and
norms run on the flat tokens, so they never pay for padding; self-attention runs per length
bucket (rows of similar length padded to the bucket's longest row, keys masked), so a row's
result does not depend on which rows share its batch. Measured on CPU this beats both padding
to ``max_len`` and torch's jagged nested-tensor attention (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from deepsets.choices import SEQUENCE_POOLINGS
from deepsets.jagged import (
    BucketLayout,
    bucket_layout,
    length_buckets,
    segment_max,
    segment_mean,
    segment_softmax,
    segment_sum,
)


class JaggedSelfAttention(nn.Module):
    """Multi-head self-attention over each row's tokens, bucketed by length.

    Args:
        dim: token width ``D``.
        heads: attention heads (must divide ``dim``).
        dropout: attention dropout (training only).

    Raises:
        ValueError: if ``heads`` does not divide ``dim``.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, layout: BucketLayout) -> Tensor:
        n, d = tokens.shape
        h = self.heads
        qkv = self.qkv(tokens)  # (N, 3D), computed on real tokens only
        # (N, D) zeros in qkv's dtype (bf16 under autocast), derived from qkv so the projection
        # stays in the autograd graph even when no row has a token (DDP needs every parameter used)
        mixed = qkv[:, :d] * 0
        for index, valid, slot, token in zip(layout.token_index, layout.valid, layout.flat_slot, layout.flat_token):
            b, length = index.shape
            block = qkv[index.reshape(-1)].view(b, length, 3, h, d // h)  # (b, L, 3, H, Dh)
            q, k, v = block.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (b, H, L, Dh)
            mask = None if bool(valid.all()) else valid[:, None, None, :]  # (b, 1, 1, L) real keys
            attended = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )  # (b, H, L, Dh)
            attended = attended.transpose(1, 2).reshape(b * length, d)  # (b*L, D)
            mixed[token] = attended[slot]  # back to the flat layout, real tokens only
        return self.out(mixed)  # (N, D)


class JaggedTransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer on jagged tokens.

    Args:
        dim: token width.
        heads: attention heads.
        ff_dim: feed-forward hidden width.
        dropout: dropout after attention and feed-forward (training only).
    """

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = JaggedSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: Tensor, layout: BucketLayout) -> Tensor:
        tokens = tokens + self.drop(self.attention(self.norm1(tokens), layout))  # (N, D)
        return tokens + self.drop(self.ff(self.norm2(tokens)))  # (N, D)


class Summarizer(nn.Module):
    """``layers`` jagged transformer layers (0 allowed), then masked pooling to one vector per row.

    Args:
        dim: token width ``D``.
        layers: number of transformer layers.
        heads: attention heads.
        ff_dim: feed-forward width (default ``4 * dim``).
        pooling: "mean", "max" or "attention" (learned scores, softmax within the row).
        dropout: dropout inside the layers.

    Raises:
        ValueError: for an unknown pooling or negative layers.
    """

    def __init__(
        self,
        dim: int,
        layers: int,
        heads: int,
        ff_dim: Optional[int] = None,
        pooling: str = "mean",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling not in SEQUENCE_POOLINGS:
            raise ValueError(f"pooling must be one of {SEQUENCE_POOLINGS}, got {pooling!r}")
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        self.layers = nn.ModuleList(
            JaggedTransformerLayer(dim, heads, ff_dim or 4 * dim, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim) if layers else nn.Identity()
        self.pooling = pooling
        self.score = nn.Linear(dim, 1) if pooling == "attention" else None

    def forward(self, tokens: Tensor, offsets: Tensor) -> Tensor:
        """Summarize each row.

        Args:
            tokens: (N, D) flat tokens of all rows.
            offsets: (B+1,) row boundaries.

        Returns:
            (B, D); an empty row gives zeros (its modality is marked missing anyway).
        """
        if len(self.layers):
            lengths = offsets[1:] - offsets[:-1]  # (B,)
            layout = bucket_layout(offsets, length_buckets(lengths))
            for layer in self.layers:
                tokens = layer(tokens, layout)  # (N, D)
            tokens = self.norm(tokens)
        if self.pooling == "mean":
            return segment_mean(tokens, offsets)  # (B, D)
        if self.pooling == "max":
            return segment_max(tokens, offsets)  # (B, D)
        weights = segment_softmax(self.score(tokens).squeeze(1), offsets)  # (N,)
        return segment_sum(tokens * weights.unsqueeze(1), offsets)  # (B, D)
