"""Transformer fusion: self-attention over the present modalities plus a CLS token."""

from typing import Callable

import torch
from torch import Tensor, nn

from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs
from deepsets.fusion.transformer_compact import cls_layer, first_layer, first_layer_state, full_layer
from deepsets.fusion.transformer_folded import fold_layer


class TransformerFusion(FusionHead):
    """A CLS token attends to the present modality vectors; its final state is the fused embedding.

    Each slot gets a learned modality-type embedding added, so the head knows WHICH modality a
    vector is (a DeepSet only sees an anonymous bag). There is no positional encoding: the type
    embedding travels with its modality, so relabelling the slots together with their embedding
    rows leaves the output unchanged. Missing slots are masked out of attention
    (src_key_padding_mask); the CLS token is never masked, so a row with nothing present still
    gets a finite output.

    Args:
        dim: width D of the modality vectors (and of the output).
        num_modalities: number of slots M.
        layers: number of encoder layers.
        heads: attention heads; must divide dim.
        ff_dim: feed-forward width inside each layer.
        dropout: dropout inside the encoder layers.

    Raises:
        ValueError: for non-positive sizes, heads not dividing dim, or dropout outside [0, 1).
    """

    def __init__(self, dim: int, num_modalities: int, layers: int, heads: int, ff_dim: int, dropout: float = 0.0):
        super().__init__()
        if min(dim, num_modalities, layers, heads, ff_dim) <= 0:
            raise ValueError(
                f"sizes must be positive, got dim={dim} num_modalities={num_modalities} "
                f"layers={layers} heads={heads} ff_dim={ff_dim}"
            )
        if dim % heads != 0:
            raise ValueError(f"heads must divide dim, got dim={dim} heads={heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dim = dim
        self.num_modalities = num_modalities
        self.out_dim = dim
        self.type_embedding = nn.Parameter(torch.randn(num_modalities, dim) * 0.02)  # (M, D)
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)  # (D,)
        layer = nn.TransformerEncoderLayer(
            d_model=dim, nhead=heads, dim_feedforward=ff_dim, dropout=dropout, batch_first=True, norm_first=True
        )
        # Nested tensors would drop masked positions; they cannot be used with norm_first anyway.
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, vectors: Tensor, present: Tensor) -> FusionOutput:
        """Fuse (B, M, D) vectors with (B, M) presence into (B, D)."""
        check_set_inputs(vectors, present, self.num_modalities, self.dim)
        batch = vectors.shape[0]
        clean = torch.where(present.unsqueeze(-1), vectors, 0.0)  # (B, M, D)
        tokens = clean + self.type_embedding  # (B, M, D)
        cls = self.cls.expand(batch, 1, self.dim)  # (B, 1, D)
        tokens = torch.cat([cls, tokens], dim=1)  # (B, 1+M, D)
        ignore = torch.cat([present.new_zeros(batch, 1), ~present], dim=1)  # (B, 1+M), True = masked
        out = self.encoder(tokens, src_key_padding_mask=ignore)  # (B, 1+M, D)
        return FusionOutput(fused=self.norm(out[:, 0]))  # (B, D)

    def forward_compact(self, tokens: Tensor, slots: Tensor) -> Tensor:
        """Fuse rows whose present modalities are given compactly: the same result as
        :meth:`forward` with only ``slots`` present, without attending over (or computing the
        feed-forward of) the missing slots, and with the last layer computed for the CLS token
        alone (the only output read). Eval mode.

        Args:
            tokens: (B, J, D) the present vectors, J >= 1.
            slots: (B, J) int64, the modality slot of each token (distinct within a row).

        Returns:
            (B, D) the fused embedding.
        """
        batch = tokens.shape[0]
        x = tokens + self.type_embedding[slots]  # (B, J, D)
        x = torch.cat([self.cls.expand(batch, 1, self.dim), x], dim=1)  # (B, 1+J, D)
        layers = [fold_layer(layer) for layer in self.encoder.layers]
        for layer in layers[:-1]:
            x = full_layer(layer, x)  # (B, 1+J, D)
        return self.norm(cls_layer(layers[-1], x))  # (B, D)

    def compact_fuser(self, vectors: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """For fusing the same rows under many subsets (ablations, eval mode): computes the
        first layer's per-token work once (:mod:`.transformer_compact`) and returns
        ``fuse(rows, slots)``, equal to :meth:`forward_compact` of ``vectors[rows]`` at ``slots``.

        Args:
            vectors: (N, M, D) every row's modality vectors (absent ones are never read).

        Returns:
            ``fuse(rows (B,), slots (B, J)) -> (B, D)``, J >= 1.
        """
        n = vectors.shape[0]
        x = torch.cat([self.cls.expand(n, 1, self.dim), vectors + self.type_embedding], dim=1)  # (N, 1+M, D): CLS at 0
        layers = [fold_layer(layer) for layer in self.encoder.layers]
        state = first_layer_state(layers[0], x)

        def fuse(rows: Tensor, slots: Tensor) -> Tensor:
            tokens = torch.cat([slots.new_zeros(slots.shape[0], 1), slots + 1], dim=1)  # (B, 1+J) positions in x
            if len(layers) == 1:
                return self.norm(first_layer(layers[0], state, rows, tokens, tokens[:, :1])[:, 0])  # (B, D)
            h = first_layer(layers[0], state, rows, tokens, tokens)  # (B, 1+J, D)
            for layer in layers[1:-1]:
                h = full_layer(layer, h)
            return self.norm(cls_layer(layers[-1], h))  # (B, D)

        return fuse
