"""Fusion heads over the SET of modality vectors, and the SetFusion wrapper every model uses.

Every head maps `vectors` (B, M, D) + `present` (B, M) bool to a `FusionOutput`; see `base.py`.
`deepsets.builders.build_fusion` assembles one from plain values, with the builder registered for
the head's name (`registry.py`; the traits are in `deepsets.fusion_heads`).
"""

from deepsets.fusion.attention import AttentionPoolFusion
from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs
from deepsets.fusion.concat import ConcatFusion
from deepsets.fusion.deepset import DeepSetFusion
from deepsets.fusion.mlp import mlp, module_out_dim
from deepsets.fusion.pooling import masked_pool
from deepsets.fusion.registry import FusionBuilder, FusionSettings, fusion_builder, register_fusion
from deepsets.fusion.set_fusion import SetFusion
from deepsets.fusion.tmm import TorchMultimodalDeepset
from deepsets.fusion.transformer import TransformerFusion

__all__ = [
    "AttentionPoolFusion",
    "ConcatFusion",
    "DeepSetFusion",
    "FusionBuilder",
    "FusionHead",
    "FusionOutput",
    "FusionSettings",
    "SetFusion",
    "TorchMultimodalDeepset",
    "TransformerFusion",
    "check_set_inputs",
    "fusion_builder",
    "masked_pool",
    "mlp",
    "module_out_dim",
    "register_fusion",
]
