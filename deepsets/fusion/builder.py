"""build_fusion: plain numbers in, an assembled SetFusion out."""

from typing import List, Optional, Sequence

from torch import nn

from deepsets.fusion.attention import AttentionPoolFusion
from deepsets.fusion.concat import ConcatFusion
from deepsets.fusion.deepset import DeepSetFusion
from deepsets.fusion.mlp import mlp
from deepsets.fusion.pooling import POOLINGS
from deepsets.fusion.set_fusion import SetFusion
from deepsets.fusion.tmm import TMM_POOLINGS, TorchMultimodalDeepset
from deepsets.fusion.transformer import TransformerFusion

FUSION_KINDS = ("deepset", "attention", "transformer", "concat", "tmm_deepset")


def build_fusion(
    kind: str,
    names: Sequence[str],
    dim: int,
    *,
    layers: int = 2,
    heads: int = 4,
    ff_dim: Optional[int] = None,
    pooling: str = "mean",
    hidden_dims: Optional[Sequence[int]] = None,
    dropout: float = 0.0,
    modality_dropout: float = 0.0,
) -> SetFusion:
    """Build a SetFusion around the head `kind`; every kind outputs width `dim`.

    Args:
        kind: "deepset", "attention", "transformer", "concat" or "tmm_deepset".
        names: modality names, unique and sorted (the slot order of the vectors).
        dim: width of the modality vectors and of the fused embedding.
        layers: encoder layers ("transformer" only).
        heads: attention heads ("transformer" only); must divide dim.
        ff_dim: feed-forward width ("transformer" only); None means 4 * dim.
        pooling: "deepset": sum/mean/max/min/median; "tmm_deepset": sum/mean/max.
        hidden_dims: hidden widths of the MLP after pooling (all kinds but "transformer");
            None means (dim,).
        dropout: dropout in that MLP, or inside the transformer layers.
        modality_dropout: probability of dropping a present modality during training.

    Raises:
        ValueError: listing every problem found: unknown kind (with the choices), bad names,
            a pooling the kind does not support, a non-positive dim.
    """
    names = list(names)
    problems: List[str] = []
    if kind not in FUSION_KINDS:
        problems.append(f"unknown fusion kind {kind!r}; choose one of {', '.join(FUSION_KINDS)}")
    if not names or names != sorted(set(names)):
        problems.append(f"names must be non-empty, unique and sorted, got {names}")
    if dim <= 0:
        problems.append(f"dim must be positive, got {dim}")
    if kind == "deepset" and pooling not in POOLINGS:
        problems.append(f"pooling for 'deepset' must be one of {POOLINGS}, got {pooling!r}")
    if kind == "tmm_deepset" and pooling not in TMM_POOLINGS:
        problems.append(f"pooling for 'tmm_deepset' must be one of {tuple(TMM_POOLINGS)}, got {pooling!r}")
    if problems:
        raise ValueError("; ".join(problems))

    hidden = (dim,) if hidden_dims is None else tuple(hidden_dims)
    num = len(names)
    head: nn.Module
    if kind == "deepset":
        head = DeepSetFusion(dim, pooling, mlp(dim, hidden, dim, dropout=dropout))
    elif kind == "attention":
        head = AttentionPoolFusion(dim, mlp(dim, hidden, dim, dropout=dropout))
    elif kind == "transformer":
        head = TransformerFusion(dim, num, layers, heads, 4 * dim if ff_dim is None else ff_dim, dropout=dropout)
    elif kind == "concat":
        head = ConcatFusion(dim, num, mlp(num * dim, hidden, dim, dropout=dropout))
    else:
        head = TorchMultimodalDeepset(names, dim, pooling, mlp(dim, hidden, dim, dropout=dropout))
    return SetFusion(head, num, dim, modality_dropout=modality_dropout)
