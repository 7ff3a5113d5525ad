"""The transformer fusion head evaluated on many subsets of the same rows (ablations).

An ablation fuses every row once per subset of its modalities. Three things do not depend on
the subset and are computed once per row (:func:`first_layer_state`): the first layer's
normalization and Q/K/V projections of every token, and the attention logits between every
pair of tokens. A subset then only picks its tokens' rows and columns of those logits, takes a
softmax over them, and mixes the values (:func:`first_layer`). Only the CLS output of the last
layer is read, so that layer runs for the CLS query alone, with the key and value projections
folded onto the query side (:func:`cls_layer`): ``q . (W_k n_j + b_k) = (W_k^T q) . n_j + const``
and ``sum_j a_j (W_v n_j + b_v) = W_v (sum_j a_j n_j) + b_v``, so the keys and values of the
subset's tokens are never projected. All of it is eval-mode ``norm_first`` encoder layers,
exactly (to float rounding) what ``nn.TransformerEncoder`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class FirstLayerState:
    """Per row, what the first layer computes whatever the subset.

    Attributes:
        x: (N, T, D) the layer's input tokens (CLS first, then the M modality slots).
        logits: (N, H, T, T) scaled attention logits of every query token against every key token.
        values: (N, T, H, D/H) the value vectors.
    """

    x: Tensor
    logits: Tensor
    values: Tensor


def first_layer_state(layer: nn.TransformerEncoderLayer, x: Tensor) -> FirstLayerState:
    """Normalize and project every token of ``x`` (N, T, D) once, and their pairwise logits."""
    attention = layer.self_attn
    n, t, d = x.shape
    heads = attention.num_heads
    q, k, v = F.linear(layer.norm1(x), attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)  # (N, T, D) each
    q, k, v = (z.view(n, t, heads, d // heads) for z in (q, k, v))  # (N, T, H, D/H)
    logits = torch.einsum("nihe,njhe->nhij", q, k) * (d // heads) ** -0.5  # (N, H, T, T)
    return FirstLayerState(x=x, logits=logits, values=v)


def first_layer(layer: nn.TransformerEncoderLayer, state: FirstLayerState, rows: Tensor, tokens: Tensor, queries: Tensor) -> Tensor:
    """The first layer's outputs at ``queries`` for each row restricted to ``tokens``.

    Args:
        layer: the encoder layer ``state`` was computed with.
        state: from :func:`first_layer_state`.
        rows: (B,) the row of each fusion.
        tokens: (B, T') token positions each fusion keeps (CLS = 0 among them).
        queries: (B, Q) positions (a subset of ``tokens``) whose outputs are wanted.

    Returns:
        (B, Q, D).
    """
    b, heads = rows.shape[0], state.logits.shape[1]
    r = rows.view(b, 1, 1, 1)
    h = torch.arange(heads, device=rows.device).view(1, heads, 1, 1)
    logits = state.logits[r, h, queries.view(b, 1, -1, 1), tokens.view(b, 1, 1, -1)]  # (B, H, Q, T')
    weights = small_softmax(logits)  # (B, H, Q, T')
    values = state.values[rows.view(b, 1), tokens]  # (B, T', H, D/H)
    attended = torch.einsum("bhqt,bthe->bqhe", weights, values).flatten(2)  # (B, Q, D)
    y = state.x[rows.view(b, 1), queries] + layer.self_attn.out_proj(attended)  # (B, Q, D)
    return y + feed_forward(layer, y)


def cls_layer(layer: nn.TransformerEncoderLayer, x: Tensor) -> Tensor:
    """A layer's output at the first (CLS) position of ``x`` (B, T, D) only: ``(B, D)``."""
    attention = layer.self_attn
    b, _, d = x.shape
    heads = attention.num_heads
    w_q, w_k, w_v = attention.in_proj_weight.chunk(3)  # (D, D) each
    b_q, _, b_v = attention.in_proj_bias.chunk(3)  # (D,) each; the key bias adds a constant to a query's logits
    normed = layer.norm1(x)  # (B, T, D)
    q = F.linear(normed[:, 0], w_q, b_q).view(b, heads, d // heads)  # (B, H, D/H)
    folded = torch.einsum("bhe,hed->bhd", q, w_k.view(heads, d // heads, d)) * (d // heads) ** -0.5  # (B, H, D)
    weights = small_softmax(torch.einsum("bhd,btd->bht", folded, normed))  # (B, H, T)
    mixed = torch.einsum("bht,btd->bhd", weights, normed)  # (B, H, D)
    attended = torch.einsum("bhd,hed->bhe", mixed, w_v.view(heads, d // heads, d)) + b_v.view(heads, d // heads)  # (B, H, D/H)
    y = x[:, 0] + attention.out_proj(attended.reshape(b, d))  # (B, D)
    return y + feed_forward(layer, y)


def full_layer(layer: nn.TransformerEncoderLayer, x: Tensor) -> Tensor:
    """A layer's outputs at every position of ``x`` (B, T, D): ``(B, T, D)`` (the middle layers)."""
    attention = layer.self_attn
    b, t, d = x.shape
    heads = attention.num_heads
    q, k, v = F.linear(layer.norm1(x), attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)  # (B, T, D) each
    q, k, v = (z.view(b, t, heads, d // heads).transpose(1, 2) for z in (q, k, v))  # (B, H, T, D/H)
    # a plain matmul attention: for a handful of tokens it beats scaled_dot_product_attention on CPU
    weights = small_softmax(torch.matmul(q, k.transpose(-1, -2)) * (d // heads) ** -0.5)  # (B, H, T, T)
    y = x + attention.out_proj(torch.matmul(weights, v).transpose(1, 2).reshape(b, t, d))  # (B, T, D)
    return y + feed_forward(layer, y)


def small_softmax(logits: Tensor) -> Tensor:
    """Softmax over a short last dimension (a handful of tokens), overwriting ``logits``.

    The same arithmetic as ``Tensor.softmax`` (the row maximum subtracted first), written out:
    torch's CPU kernel works one short row at a time and is ~4x slower at these shapes."""
    weights = logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
    return weights.div_(weights.sum(dim=-1, keepdim=True))


def feed_forward(layer: nn.TransformerEncoderLayer, y: Tensor) -> Tensor:
    """The layer's feed-forward branch (pre-norm) of ``y`` (..., D)."""
    hidden = layer.linear1(layer.norm2(y))  # (..., F)
    hidden = hidden.relu_() if layer.activation is F.relu else layer.activation(hidden)  # in place: half the memory traffic
    return layer.linear2(hidden)  # (..., D)
