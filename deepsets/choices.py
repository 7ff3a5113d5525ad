"""Every choice list of the model library, in one torch-free module.

The modules that implement a choice check against these lists, and the run config
(``deepsets.pipelines.config``) validates against the same lists. This module imports nothing, so
whatever reads a list does not load the model library for it.
"""

from __future__ import annotations

FUSIONS = ("deepset", "attention", "transformer", "concat", "tmm_deepset", "mmt")
"""``fusion=`` of :func:`deepsets.builders.build_model`: five set-fusion heads plus the MMT baseline."""

SET_FUSION_HEADS = FUSIONS[:-1]
"""Heads that fuse the set of modality vectors (``mmt`` instead runs one transformer over tokens)."""

SEQUENCE_POOLINGS = ("mean", "max", "attention")
"""``pooling=``: how a variable-length modality's tokens become one vector (``deepsets.summarize``)."""

SET_POOLINGS = ("sum", "mean", "max", "min", "median")
"""``fusion_pooling=``: how the ``deepset`` head pools the set of modality vectors."""

TMM_POOLINGS = ("sum", "mean", "max")
"""``fusion_pooling=`` of the ``tmm_deepset`` baseline (torchmultimodal's own choices)."""

TASKS = ("binary", "multilabel", "multiclass", "regression", "listwise", "pairwise", "two_tower")
GROUPED_TASKS = ("listwise", "pairwise")
"""Losses over query groups: these need a group id per row."""
HEAD_TASKS = TASKS[:-1]
"""Tasks with a linear task head on the fused embedding (two_tower has two towers instead)."""

NEGATIVES = ("in_batch", "mixed", "catalogue")
"""two_tower: the negatives of each query (``deepsets.pipelines.training.negatives``)."""

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "linear")
