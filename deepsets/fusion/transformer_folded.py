"""An eval-mode ``norm_first`` encoder layer's weights rearranged for the compact fusion path.

The compact path (:mod:`.transformer_compact`) runs the same layer on a few hundred thousand
small token sets, where passes over memory cost as much as the products. Folding constants
into the weights once per ablation, and fusing operations, removes passes:

- the attention of a single (CLS) query folds the key projection onto the query and the
  value projection onto the output (:func:`fold_layer`, ``query_key`` and ``value_out``);
- the feed-forward block ``y + W2 relu(W1 norm2(y) + b1) + b2`` runs as two oneDNN products
  with the ReLU and the residual fused into them (:func:`residual_feed_forward`), where torch
  has them (CPU, float32); else as plain torch operations.

Every fold is exact algebra; results differ from ``nn.TransformerEncoderLayer`` by float
rounding only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class FoldedLayer:
    """One encoder layer with its constants folded (see the module docstring).

    Attributes:
        layer: the layer itself (its norms, projections and activation).
        query_key: (D, H*D) the normalized CLS token times this (plus ``query_key_bias``) is, per
            head, the scaled vector whose dot product with each normalized token is its logit.
        query_key_bias: (H*D,).
        value_out: (H*D, D) the per-head attention-weighted normalized tokens, flattened, times
            this (plus ``value_out_bias``) is the attention block's output.
        value_out_bias: (D,).
        head_out_bias: (D,) the output projection's bias over the number of heads: added to each
            head's projected values, the heads' weighted sum carries the bias once.
        fused_ffn: run the feed-forward block as oneDNN products with the ReLU and the residual
            fused in (ReLU layers on a CPU in float32, where this torch has them).
    """

    layer: nn.TransformerEncoderLayer
    query_key: Tensor
    query_key_bias: Tensor
    value_out: Tensor
    value_out_bias: Tensor
    head_out_bias: Tensor
    fused_ffn: bool


def fold_layer(layer: nn.TransformerEncoderLayer) -> FoldedLayer:
    """Fold ``layer``'s constants (eval mode, ``norm_first``).

    For head ``h``, ``q_h . (W_k,h n_j + b_k,h)`` differs from ``(W_k,h^T q_h) . n_j`` by a
    constant that the softmax cancels, with ``q_h = W_q,h n_0 + b_q,h``; and since a head's
    weights sum to one, ``W_o,h sum_j a_hj (W_v,h n_j + b_v,h) = (W_o,h W_v,h) sum_j a_hj n_j
    + W_o,h b_v,h``.
    """
    attention = layer.self_attn
    d, heads = attention.embed_dim, attention.num_heads
    scale = (d // heads) ** -0.5
    w_q, w_k, w_v = (w.view(heads, d // heads, d) for w in attention.in_proj_weight.chunk(3))  # (H, D/H, D) each
    b_q, _, b_v = attention.in_proj_bias.chunk(3)  # (D,) each; the key bias adds a constant to a query's logits
    w_o = attention.out_proj.weight.view(d, heads, d // heads)  # (D, H, D/H)
    return FoldedLayer(
        layer=layer,
        query_key=torch.einsum("hed,hef->dhf", w_q, w_k).reshape(d, heads * d) * scale,  # (D, H*D)
        query_key_bias=torch.einsum("he,hef->hf", b_q.view(heads, -1), w_k).reshape(heads * d) * scale,  # (H*D,)
        value_out=torch.einsum("ohe,hef->hfo", w_o, w_v).reshape(heads * d, d),  # (H*D, D)
        value_out_bias=attention.out_proj(b_v),  # (D,)
        head_out_bias=attention.out_proj.bias / heads,  # (D,)
        fused_ffn=layer.activation is F.relu and _fused_products_work(layer),
    )


def _fused_products_work(layer: nn.TransformerEncoderLayer) -> bool:
    """Whether oneDNN's fused linear products (``torch.ops.mkldnn._linear_pointwise``, what
    ``torch.compile`` uses on CPU) exist here for this layer's weights and agree with plain torch."""
    weight = layer.linear1.weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return False
    try:
        probe = torch.linspace(-1.0, 1.0, 3 * weight.shape[1], dtype=weight.dtype).view(3, -1)  # (3, D)
        fused = torch.ops.mkldnn._linear_pointwise(probe, weight, layer.linear1.bias, "relu", [None], "")  # (3, F)
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):  # absent, or another signature in this torch
        return False
    return bool(torch.allclose(fused, F.relu(layer.linear1(probe)), atol=1e-5, rtol=1e-5))


def residual_feed_forward(folded: FoldedLayer, y: Tensor) -> Tensor:
    """``y + feed_forward(y)`` for ``y`` (..., D), overwriting nothing: ``(..., D)``."""
    layer = folded.layer
    if not folded.fused_ffn:
        return y + layer.linear2(layer.activation(layer.linear1(layer.norm2(y))))
    flat = y.reshape(-1, y.shape[-1])  # (R, D)
    hidden = torch.ops.mkldnn._linear_pointwise(
        layer.norm2(flat), layer.linear1.weight, layer.linear1.bias, "relu", [None], ""
    )  # (R, F)
    return torch.ops.mkldnn._linear_pointwise.binary(
        hidden, flat, layer.linear2.weight, layer.linear2.bias, "add"
    ).view(y.shape)
