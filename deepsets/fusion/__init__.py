"""Fusion heads over the SET of modality vectors, and the SetFusion wrapper every model uses.

Every head maps `vectors` (B, M, D) + `present` (B, M) bool to a `FusionOutput`; see `base.py`.
"""

from deepsets.fusion.attention import AttentionPoolFusion
from deepsets.fusion.base import FusionHead, FusionOutput, check_set_inputs
from deepsets.fusion.builder import FUSION_KINDS, build_fusion
from deepsets.fusion.concat import ConcatFusion
from deepsets.fusion.deepset import DeepSetFusion
from deepsets.fusion.mlp import mlp, module_out_dim
from deepsets.fusion.pooling import POOLINGS, masked_pool
from deepsets.fusion.set_fusion import SetFusion
from deepsets.fusion.tmm import TMM_POOLINGS, TorchMultimodalDeepset
from deepsets.fusion.transformer import TransformerFusion

__all__ = [
    "AttentionPoolFusion",
    "ConcatFusion",
    "DeepSetFusion",
    "FUSION_KINDS",
    "FusionHead",
    "FusionOutput",
    "POOLINGS",
    "SetFusion",
    "TMM_POOLINGS",
    "TorchMultimodalDeepset",
    "TransformerFusion",
    "build_fusion",
    "check_set_inputs",
    "masked_pool",
    "mlp",
    "module_out_dim",
]
