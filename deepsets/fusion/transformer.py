"""Transformer fusion: self-attention over the present modalities plus a CLS token."""

import torch
import torch.nn.functional as F
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

    def forward_compact(self, tokens: Tensor, slots: Tensor) -> Tensor:
        """Fuse rows whose present modalities are given compactly: the same result as
        :meth:`forward` with only ``slots`` present, without attending over (or computing the
        feed-forward of) the missing slots, and with the last layer computed for the CLS token
        alone (the only output read). Used by ablations, which fuse many subsets (eval mode).

        Args:
            tokens: (B, J, D) the present vectors, J >= 1.
            slots: (B, J) int64, the modality slot of each token (distinct within a row).

        Returns:
            (B, D) the fused embedding.
        """
        batch = tokens.shape[0]
        x = tokens + self.type_embedding[slots]  # (B, J, D)
        x = torch.cat([self.cls.expand(batch, 1, self.dim), x], dim=1)  # (B, 1+J, D)
        layers = self.encoder.layers
        for layer in layers[:-1]:
            x = _pre_norm_layer(layer, x, x)  # (B, 1+J, D)
        return self.norm(_pre_norm_layer(layers[-1], x[:, :1], x)[:, 0])  # (B, D)


def _pre_norm_layer(layer: nn.TransformerEncoderLayer, queries: Tensor, x: Tensor) -> Tensor:
    """One ``norm_first`` encoder layer (eval mode, no mask) evaluated at ``queries`` only:
    ``(B, Q, D)`` outputs for the positions of ``x`` (B, T, D) given as ``queries`` (all of
    ``x``, or its first position)."""
    attention = layer.self_attn
    d, heads = x.shape[-1], attention.num_heads
    normed_x = layer.norm1(x)  # (B, T, D)
    normed_q = normed_x if queries is x else layer.norm1(queries)  # (B, Q, D)
    q = F.linear(normed_q, attention.in_proj_weight[:d], attention.in_proj_bias[:d])  # (B, Q, D)
    k, v = F.linear(normed_x, attention.in_proj_weight[d:], attention.in_proj_bias[d:]).chunk(2, dim=-1)  # (B, T, D) each
    b, n_q = q.shape[0], q.shape[1]
    q, k, v = (t.view(b, -1, heads, d // heads).transpose(1, 2) for t in (q, k, v))  # (B, H, Q or T, D/H)
    # a plain matmul softmax: for a handful of tokens it beats scaled_dot_product_attention on CPU
    weights = (torch.matmul(q, k.transpose(-1, -2)) * (d // heads) ** -0.5).softmax(dim=-1)  # (B, H, Q, T)
    attended = torch.matmul(weights, v)  # (B, H, Q, D/H)
    y = queries + attention.out_proj(attended.transpose(1, 2).reshape(b, n_q, d))  # (B, Q, D)
    hidden = layer.linear1(layer.norm2(y))  # (B, Q, F)
    hidden = hidden.relu_() if layer.activation is F.relu else layer.activation(hidden)  # in place: half the memory traffic
    return y + layer.linear2(hidden)  # (B, Q, D)
