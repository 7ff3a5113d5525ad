"""The fixed choice lists of the model library, in one torch-free module.

The modules that implement a choice check against these lists, and the run config
(``deepsets.pipelines.config``) validates against the same lists. This module imports nothing, so
whatever reads a list does not load the model library for it. The choices that grow by
registration live in their tables: fusion heads in ``deepsets.fusion_heads``, task kinds in
``deepsets.task_kinds``, modality kinds in ``deepsets.kinds``.
"""

from __future__ import annotations

SEQUENCE_POOLINGS = ("mean", "max", "attention")
"""``pooling=``: how a variable-length modality's tokens become one vector (``deepsets.summarize``)."""

SET_POOLINGS = ("sum", "mean", "max", "min", "median")
"""``fusion_pooling=``: how the ``deepset`` head pools the set of modality vectors."""

TMM_POOLINGS = ("sum", "mean", "max")
"""``fusion_pooling=`` of the ``tmm_deepset`` baseline (torchmultimodal's own choices)."""

NEGATIVES = ("in_batch", "mixed", "catalogue")
"""two_tower: the negatives of each query (``deepsets.pipelines.training.negatives``)."""

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "linear")
