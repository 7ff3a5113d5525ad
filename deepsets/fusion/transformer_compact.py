"""The transformer fusion head evaluated on many subsets of the same rows (ablations).

An ablation fuses every row once per subset of its modalities. What does not depend on the
subset is computed once per row (:func:`first_layer_state`): the first layer's normalization
and Q/K/V projections of every token, the attention logits between every pair of tokens, and
each token's values already through each head's block of the output projection. A subset then
only picks its tokens' logits, takes a softmax over them, and takes one weighted sum
(:func:`first_layer`). Only the CLS output of the last layer is read, so that layer runs for
the CLS query alone, with the key and value projections folded onto the query side
(:func:`cls_layer`, :mod:`.transformer_folded`), so the keys and values of the subset's tokens
are never projected. All of it is eval-mode ``norm_first`` encoder layers, exactly (to float
rounding) what ``nn.TransformerEncoder`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from deepsets.fusion.transformer_folded import FoldedLayer, residual_feed_forward

SAFE_SHIFT = 60.0  # exp(-60) ~ 1e-26: far from float32's smallest normal number (~1e-38)


@dataclass
class FirstLayerState:
    """Per row, what the first layer computes whatever the subset.

    Attributes:
        x: (N, T, D) the layer's input tokens (CLS first, then the M modality slots).
        logits: (N, T, T, H) scaled attention logits of every query token (dim 1) against every
            key token (dim 2), per head; already exponentiated (less each query's largest logit)
            when ``exponentiated``.
        exponentiated: a subset's softmax is then ``logits`` over their sum across its tokens:
            the shift is the same for every subset, and the CLS key (in every subset) is within
            ``SAFE_SHIFT`` of the largest, so no subset's sum underflows.
        projected: (N, T, H, D) each token's value under each head, through that head's block
            of the output projection (plus its share of the output bias): a query's attention
            output is the attention-weighted sum of these over kept tokens and heads.
    """

    x: Tensor
    logits: Tensor
    projected: Tensor
    exponentiated: bool


def head_projections(folded: FoldedLayer, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The layer's queries, keys and values of ``x`` (N, T, D), split by head: ``(N, T, H, D/H)`` each."""
    attention = folded.layer.self_attn
    n, t, d = x.shape
    qkv = F.linear(folded.layer.norm1(x), attention.in_proj_weight, attention.in_proj_bias)  # (N, T, 3D)
    return tuple(z.view(n, t, attention.num_heads, d // attention.num_heads) for z in qkv.chunk(3, dim=-1))


def first_layer_state(folded: FoldedLayer, x: Tensor) -> FirstLayerState:
    """Normalize and project every token of ``x`` (N, T, D) once, and their pairwise logits."""
    attention = folded.layer.self_attn
    n, t, d = x.shape
    heads = attention.num_heads
    q, k, v = head_projections(folded, x)  # (N, T, H, D/H) each
    logits = torch.einsum("nihe,njhe->nijh", q, k) * (d // heads) ** -0.5  # (N, T, T, H)
    out_weight = attention.out_proj.weight.view(d, heads, d // heads)  # (D, H, D/H)
    projected = torch.einsum("nthe,dhe->nthd", v, out_weight) + folded.head_out_bias  # (N, T, H, D)
    shift = logits.amax(dim=2, keepdim=True)  # (N, T, 1, H): each query's largest logit per head
    exponentiated = bool((shift[:, :, 0] - logits[:, :, 0]).max() <= SAFE_SHIFT) if n else True  # CLS logits (N, T, H)
    if exponentiated:
        logits = logits.sub_(shift).exp_()  # (N, T, T, H), each in (0, 1]
    return FirstLayerState(
        x=x, logits=logits.contiguous(), projected=projected.contiguous(), exponentiated=exponentiated
    )


def first_layer(folded: FoldedLayer, state: FirstLayerState, rows: Tensor, tokens: Tensor, queries: Tensor) -> Tensor:
    """The first layer's outputs at ``queries`` for each row restricted to ``tokens``.

    Every gather takes whole contiguous blocks by ``index_select`` (a row's query, a row's
    token): ~3x faster here than advanced indexing over several dimensions at once.

    Args:
        folded: the encoder layer ``state`` was computed with.
        state: from :func:`first_layer_state`.
        rows: (B,) the row of each fusion.
        tokens: (B, T') token positions each fusion keeps (CLS = 0 among them).
        queries: (B, Q) positions (a subset of ``tokens``) whose outputs are wanted.

    Returns:
        (B, Q, D).
    """
    n, t, heads, d = state.projected.shape
    (b, kept), q = tokens.shape, queries.shape[1]
    at_queries = (rows.view(b, 1) * t + queries).view(-1)  # (B*Q,) rows of (N*T, ...)
    every_key = state.logits.view(n * t, t, heads).index_select(0, at_queries)  # (B*Q, T, H)
    logits = every_key.gather(
        1, tokens.view(b, 1, kept, 1).expand(b, q, kept, heads).reshape(b * q, kept, heads)
    )  # (B*Q, T', H)
    if state.exponentiated:
        weights = logits.div_(logits.sum(dim=1, keepdim=True)).view(b, q, kept * heads)  # (B, Q, T'*H)
    else:
        weights = small_softmax(logits, dim=1).view(b, q, kept * heads)
    at_tokens = (rows.view(b, 1) * t + tokens).view(-1)  # (B*T',)
    projected = (
        state.projected.view(n * t, heads * d).index_select(0, at_tokens).view(b, kept * heads, d)
    )  # (B, T'*H, D)
    y = state.x.view(n * t, d).index_select(0, at_queries).view(b, q, d)  # (B, Q, D) the residual
    y.baddbmm_(weights, projected)  # (B, Q, D): plus the attention block's output
    return residual_feed_forward(folded, y)


def cls_layer(folded: FoldedLayer, x: Tensor) -> Tensor:
    """A layer's output at the first (CLS) position of ``x`` (B, T, D) only: ``(B, D)``."""
    b = x.shape[0]
    heads = folded.layer.self_attn.num_heads
    normed = folded.layer.norm1(x)  # (B, T, D)
    query = torch.addmm(folded.query_key_bias, normed[:, 0], folded.query_key).view(b, heads, -1)  # (B, H, D)
    weights = small_softmax(torch.bmm(query, normed.transpose(1, 2)))  # (B, H, T)
    mixed = torch.bmm(weights, normed)  # (B, H, D)
    y = torch.addmm(folded.value_out_bias, mixed.view(b, -1), folded.value_out).add_(x[:, 0])  # (B, D)
    return residual_feed_forward(folded, y)


def full_layer(folded: FoldedLayer, x: Tensor) -> Tensor:
    """A layer's outputs at every position of ``x`` (B, T, D): ``(B, T, D)`` (the middle layers)."""
    attention = folded.layer.self_attn
    b, t, d = x.shape
    heads = attention.num_heads
    q, k, v = (z.transpose(1, 2) for z in head_projections(folded, x))  # (B, H, T, D/H) each
    # a plain matmul attention: for a handful of tokens it beats scaled_dot_product_attention on CPU
    weights = small_softmax(torch.matmul(q, k.transpose(-1, -2)) * (d // heads) ** -0.5)  # (B, H, T, T)
    y = x + attention.out_proj(torch.matmul(weights, v).transpose(1, 2).reshape(b, t, d))  # (B, T, D)
    return residual_feed_forward(folded, y)


def small_softmax(logits: Tensor, dim: int = -1) -> Tensor:
    """Softmax over a short dimension (a handful of tokens), overwriting ``logits``.

    The same arithmetic as ``Tensor.softmax`` (the maximum subtracted first), written out:
    torch's CPU kernel works one short row at a time and is ~4x slower at these shapes."""
    weights = logits.sub_(logits.amax(dim=dim, keepdim=True)).exp_()
    return weights.div_(weights.sum(dim=dim, keepdim=True))
