"""Transformer fusion: self-attention over the present modalities plus a CLS token."""

import torch
from torch import Tensor, nn

from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs


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
