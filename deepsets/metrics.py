"""Validation metrics of the built-in pointwise task kinds, accumulated over batches, computed
once over the whole set (the names each kind reports are declared in ``deepsets.task_kinds``;
``deepsets.tasks`` registers this accumulator for them).

    metrics = TaskMetrics("binary", num_outputs=1)
    for batch in validation:
        metrics.update(model(batch).logits, batch.labels["clicked"])
    metrics.compute()      # {"loss": 0.41, "auc": 0.83, "log_loss": 0.41}
    metrics.reset()

| kind       | metrics (besides ``loss``, the task loss's mean over the whole set)               |
|------------|-----------------------------------------------------------------------------------|
| binary     | ``auc`` (ROC AUC), ``log_loss`` (mean binary cross-entropy of the logits)         |
| multilabel | ``f1_micro``, ``f1_macro`` (positive: sigmoid > 0.5), ``map`` (macro avg. prec.) |
| multiclass | ``accuracy`` (top-1)                                                              |
| regression | ``rmse`` (over every target of every row)                                         |

AUC and average precision rank the *whole* set, so they are exact only when every validation
row goes through one ``TaskMetrics``: the training recipe validates a share on every rank and
replays every rank's updates into one accumulator on rank 0 (:mod:`deepsets.pipelines.training.validation`).
Nothing here synchronizes across processes.

torchmetrics has no log loss metric, so ``log_loss`` and ``loss`` are running float64 sums of
per-element losses divided by their count: exactly the mean over the set, whatever the batching.
"""

from __future__ import annotations

import math
import warnings
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import (
    BinaryAUROC,
    MulticlassAccuracy,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)

from deepsets.task_kinds import task_traits

POINTWISE_KINDS = ("binary", "multilabel", "multiclass", "regression")
"""The kinds this module computes metrics for (ranking kinds are scored per query group)."""


def _elementwise_loss(kind: str, logits: Tensor, target: Tensor) -> Tensor:
    """Per-element task loss in float64, the same definition as :func:`deepsets.tasks.task_loss`
    (whose mean over a batch is the mean of these)."""
    logits = logits.to(torch.float64)
    if kind in ("binary", "multilabel"):
        return F.binary_cross_entropy_with_logits(logits, target.to(torch.float64), reduction="none")
    if kind == "multiclass":
        return F.cross_entropy(logits, target, reduction="none")
    return (logits - target.to(torch.float64)) ** 2


class TaskMetrics:
    """Accumulates one task's validation metrics; :meth:`compute` returns plain floats.

    Args:
        kind: binary, multilabel, multiclass or regression (as in :class:`deepsets.tasks.TaskHead`).
        num_outputs: logits per row ``K``: 1 for binary, labels / classes / targets otherwise.

    Undefined values are ``nan``, never a made-up number: ``auc`` when the targets hold a single
    class; ``map`` when no label has a positive (labels without any positive are left out of
    the macro average, since their precision is undefined).

    Raises:
        ValueError: for an unknown kind or a ``num_outputs`` the kind cannot have.
    """

    def __init__(self, kind: str, num_outputs: int) -> None:
        if kind not in POINTWISE_KINDS:
            raise ValueError(f"TaskMetrics computes the metrics of {', '.join(POINTWISE_KINDS)}, got {kind!r}")
        problem = task_traits(kind).outputs_problem(num_outputs)  # the kind's one rule (deepsets.task_kinds)
        if problem:
            raise ValueError(problem)
        self.kind, self.num_outputs = kind, num_outputs
        # sync_on_compute=False below: validation runs on rank 0 alone; torchmetrics would
        # otherwise wait at a barrier for ranks that never come (a deadlock under DDP).
        K = num_outputs
        if kind == "binary":
            self._auc = BinaryAUROC(sync_on_compute=False)
        elif kind == "multilabel":
            self._f1_micro = MultilabelF1Score(num_labels=K, threshold=0.5, average="micro", sync_on_compute=False)
            self._f1_macro = MultilabelF1Score(num_labels=K, threshold=0.5, average="macro", sync_on_compute=False)
            self._ap = MultilabelAveragePrecision(num_labels=K, average="none", sync_on_compute=False)
        elif kind == "multiclass":
            self._accuracy = MulticlassAccuracy(num_classes=K, average="micro", top_k=1, sync_on_compute=False)
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        for metric in (getattr(self, a, None) for a in ("_auc", "_f1_micro", "_f1_macro", "_ap", "_accuracy")):
            if metric is not None:
                metric.reset()
        self.rows = 0
        self._loss_sum = 0.0  # float64 sum of per-element losses
        self._loss_count = 0
        self._positives = torch.zeros(self.num_outputs, dtype=torch.int64)  # per label/logit

    def _check(self, logits: Tensor, target: Tensor) -> Tensor:
        """Validate shapes; return the target shaped and typed for this kind."""
        if logits.dim() != 2 or logits.shape[1] != self.num_outputs:
            raise ValueError(
                f"logits must be (B, {self.num_outputs}) for this {self.kind} task, got {tuple(logits.shape)}"
            )
        B, K = logits.shape
        if self.kind in ("binary", "multiclass"):
            if target.numel() != B or (target.dim() == 2 and target.shape[1] != 1) or target.dim() > 2:
                raise ValueError(f"{self.kind} target must be (B,) or (B, 1) with B={B}, got {tuple(target.shape)}")
            target = target.reshape(B, 1) if self.kind == "binary" else target.reshape(B)
        elif tuple(target.shape) != (B, K) and not (K == 1 and tuple(target.shape) == (B,)):
            raise ValueError(f"{self.kind} target must be ({B}, {K}), got {tuple(target.shape)}")
        target = target.reshape(B, K) if self.kind in ("multilabel", "regression") else target
        if self.kind in ("binary", "multilabel"):
            if not bool(((target == 0) | (target == 1)).all()):
                raise ValueError(
                    f"{self.kind} targets must be 0 or 1, found {sorted(set(target.unique().tolist()) - {0, 1})[:5]}"
                )
            return target.to(torch.int64)
        if self.kind == "multiclass":
            if target.is_floating_point() and not bool((target == target.round()).all()):
                raise ValueError("multiclass targets must be class ids (whole numbers)")
            target = target.to(torch.int64)
            if B and (int(target.min()) < 0 or int(target.max()) >= K):
                raise ValueError(
                    f"multiclass targets must be in [0, {K}), found {int(target.min())}..{int(target.max())}"
                )
            return target
        return target.to(torch.float32)

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add a batch: ``logits`` (B, K); ``target`` (B,) or (B, K) 0/1 labels, class ids
        (multiclass) or values (regression). Tensors may live on any device; they are copied
        to the CPU.

        Raises:
            ValueError: for shapes that do not match the task, non-0/1 binary or multilabel
                targets, or class ids out of range.
        """
        logits = logits.detach().to("cpu", torch.float32)
        target = self._check(logits, target.detach().to("cpu"))
        B = logits.shape[0]
        if B == 0:
            return
        losses = _elementwise_loss(self.kind, logits, target)
        self._loss_sum += float(losses.sum())
        self._loss_count += losses.numel()
        self.rows += B
        if self.kind == "binary":
            self._auc.update(logits.reshape(B), target.reshape(B))
            self._positives += target.sum(dim=0)
        elif self.kind == "multilabel":
            probs = torch.sigmoid(logits)  # (B, K)
            self._f1_micro.update(probs, target)
            self._f1_macro.update(probs, target)
            self._ap.update(probs, target)
            self._positives += target.sum(dim=0)
        elif self.kind == "multiclass":
            self._accuracy.update(logits, target)

    def compute(self) -> Dict[str, float]:
        """Metrics over every row updated since the last reset, as plain floats.

        Raises:
            ValueError: when no row was updated.
        """
        if self.rows == 0:
            raise ValueError(f"no rows to compute {self.kind} metrics on: call update() with at least one row first")
        out = {"loss": self._loss_sum / self._loss_count}
        if self.kind == "binary":
            single_class = int(self._positives[0]) in (0, self.rows)
            out["auc"] = math.nan if single_class else float(self._auc.compute())
            out["log_loss"] = out["loss"]
        elif self.kind == "multilabel":
            out["f1_micro"] = float(self._f1_micro.compute())
            out["f1_macro"] = float(self._f1_macro.compute())
            has_positive = self._positives > 0  # (K,)
            if bool(has_positive.any()):
                with warnings.catch_warnings():  # "no positive samples" for the labels left out below
                    warnings.filterwarnings("ignore", message=".*[Nn]o positive samples.*")
                    per_label = self._ap.compute()  # (K,)
                out["map"] = float(per_label[has_positive].mean())
            else:
                out["map"] = math.nan
        elif self.kind == "multiclass":
            out["accuracy"] = float(self._accuracy.compute())
        else:
            out["rmse"] = math.sqrt(out["loss"])  # loss is the mean squared error
        return out
