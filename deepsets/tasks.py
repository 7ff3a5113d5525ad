"""Task heads on the fused embedding, and each task kind's loss, metrics and ablation metric.

The traits of every kind (metric names, default selection, outputs, groups) are declared in
``deepsets.task_kinds``; this module registers the torch side beside them. A new kind is one
call::

    register_task(TaskTraits("poisson", ("loss", "deviance"), "deviance", ("loss", "deviance"), "neg_deviance"),
                  loss=poisson_loss, metrics=PoissonMetrics, ablation=neg_deviance)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepsets.ablation import auc
from deepsets.metrics import TaskMetrics
from deepsets.ranking import listwise_softmax_loss, pad_groups, pairwise_logistic_loss
from deepsets.registry import Registry
from deepsets.task_kinds import TaskTraits, register_task_traits, task_names, task_traits


class MetricAccumulator(Protocol):
    """Validation metrics over batches: ``update`` per batch, ``compute`` once, ``reset``."""

    def update(self, logits: Tensor, target: Tensor) -> None: ...

    def compute(self) -> Dict[str, float]: ...

    def reset(self) -> None: ...


LossFn = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]
"""``(logits (B, K), target, group (B,) or None) -> scalar mean loss``."""
AblationFn = Callable[[Tensor, Tensor], Tensor]
"""``(logits (..., N, K), target (N,) or (N, K)) -> (...)``: the ablation metric, higher is better."""


@dataclass(frozen=True)
class TaskImplementation:
    """The torch side of a task kind.

    Attributes:
        loss: the training loss (:data:`LossFn`).
        metrics: ``num_outputs -> accumulator`` of its validation metrics, which reports the
            traits' ``metrics``; None for the ranking kinds (scored per query group by the
            training recipe).
        ablation: its ablation metric (:data:`AblationFn`); None for kinds ablated by ranking
            metrics.
    """

    loss: Optional[LossFn]
    metrics: Optional[Callable[[int], MetricAccumulator]] = None
    ablation: Optional[AblationFn] = None


def _grouped_loss(kind: str) -> LossFn:
    def loss(logits: Tensor, target: Tensor, group: Optional[Tensor]) -> Tensor:
        if group is None:
            raise ValueError(f"a {kind} loss needs the query group of every row")
        if target.numel() != logits.numel() or group.numel() != logits.numel():
            raise ValueError(
                f"a {kind} loss needs one score, one relevance and one group per row, got {tuple(logits.shape)}, {tuple(target.shape)}, {tuple(group.shape)}"
            )
        scores, labels, mask = pad_groups(logits.reshape(-1), target.reshape(-1), group.reshape(-1))  # (G, L) each
        return (listwise_softmax_loss if kind == "listwise" else pairwise_logistic_loss)(scores, labels, mask)

    return loss


def _pointwise_metrics(kind: str) -> Callable[[int], MetricAccumulator]:
    return lambda num_outputs: TaskMetrics(kind, num_outputs)


_IMPLEMENTATIONS: Registry[TaskImplementation] = Registry(
    "task implementation",
    "implementations",
    (
        (
            "binary",
            TaskImplementation(
                loss=lambda logits, target, group: F.binary_cross_entropy_with_logits(
                    logits.reshape(-1), target.reshape(-1).to(logits.dtype)
                ),
                metrics=_pointwise_metrics("binary"),
                ablation=lambda logits, target: auc(logits[..., 0], target.reshape(-1)),  # ROC AUC
            ),
        ),
        (
            "multilabel",
            TaskImplementation(
                loss=lambda logits, target, group: F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype)),
                metrics=_pointwise_metrics("multilabel"),
                ablation=lambda logits, target: auc(logits.transpose(-1, -2), target.T).nanmean(
                    dim=-1
                ),  # macro ROC AUC over labels
            ),
        ),
        (
            "multiclass",
            TaskImplementation(
                loss=lambda logits, target, group: F.cross_entropy(logits, target.reshape(-1).to(torch.int64)),
                metrics=_pointwise_metrics("multiclass"),
                ablation=lambda logits, target: (logits.argmax(dim=-1) == target.long()).double().mean(dim=-1),
            ),  # accuracy
        ),
        (
            "regression",
            TaskImplementation(
                loss=lambda logits, target, group: F.mse_loss(logits.reshape(target.shape), target.to(logits.dtype)),
                metrics=_pointwise_metrics("regression"),
                ablation=lambda logits, target: (
                    -((logits[..., 0].double() - target.reshape(-1).double()) ** 2).mean(dim=-1).sqrt()
                ),  # -RMSE
            ),
        ),
        ("listwise", TaskImplementation(loss=_grouped_loss("listwise"))),
        ("pairwise", TaskImplementation(loss=_grouped_loss("pairwise"))),
        ("two_tower", TaskImplementation(loss=None)),  # in-batch softmax over the towers (deepsets.ranking)
    ),
)


def register_task(
    traits: TaskTraits,
    *,
    loss: LossFn,
    metrics: Callable[[int], MetricAccumulator],
    ablation: Optional[AblationFn] = None,
) -> None:
    """Register a task kind with a task head: its traits (``deepsets.task_kinds``), loss,
    validation metrics and (when ``traits.ablation_metric`` is set) ablation metric.

    Args:
        traits: what the kind is (its metric names, default selection, outputs).
        loss: the training loss.
        metrics: ``num_outputs -> accumulator`` whose ``compute()`` gives ``traits.metrics``.
        ablation: the ablation metric, higher is better; needed when ``traits.ablation_metric``
            names one.

    Raises:
        ValueError: for traits without a task head, an ablation metric named without its
            function (or the other way round), or a name registered with other traits.
    """
    if not traits.head:
        raise ValueError(f"task kind {traits.name!r}: only kinds with a task head (head=True) are registered here")
    if (traits.ablation_metric is None) != (ablation is None):
        raise ValueError(f"task kind {traits.name!r}: give an ablation function exactly when ablation_metric names one")
    register_task_traits(traits)
    _IMPLEMENTATIONS.register(traits.name, TaskImplementation(loss, metrics, ablation), replace=True)


def task_implementation(kind: str) -> TaskImplementation:
    """The torch side of ``kind``.

    Raises:
        ValueError: for an unknown kind (listing the known ones) or one with traits only.
    """
    task_traits(kind)  # an unknown kind says so, with the known ones
    implementation = _IMPLEMENTATIONS.find(kind)
    if implementation is None:
        raise ValueError(f"task kind {kind!r} has traits but no loss (deepsets.tasks.register_task)")
    return implementation


class TaskHead(nn.Module):
    """A linear layer from the fused embedding to the task's logits.

    Args:
        in_dim: fused embedding width.
        kind: a task kind with a head (``TaskTraits.head``): binary (1 logit), multilabel (one
            logit per label), multiclass (one per class), regression (one value per target),
            listwise / pairwise (1 ranking score), or a registered kind.
        num_outputs: labels / classes / targets, within the kind's outputs range.

    Raises:
        ValueError: for an unknown kind, one without a head, or a bad ``num_outputs``.
    """

    def __init__(self, in_dim: int, kind: str, num_outputs: int = 1) -> None:
        super().__init__()
        heads = [name for name in task_names() if task_traits(name).head]
        if kind not in heads:
            raise ValueError(f"task kind must be one of {tuple(heads)}, got {kind!r}")
        if task_traits(kind).outputs_problem(num_outputs):
            raise ValueError(f"{kind} task cannot have num_outputs={num_outputs}")
        self.kind = kind
        self.linear = nn.Linear(in_dim, num_outputs)

    def forward(self, fused: Tensor) -> Tensor:
        return self.linear(fused)  # (B, num_outputs)


def task_loss(kind: str, logits: Tensor, target: Tensor, group: Tensor | None = None) -> Tensor:
    """Mean loss of ``logits`` (B, K) against ``target``: (B,) or (B, K) floats; class ids for
    multiclass; relevance (0/1 or graded) for listwise / pairwise.

    Args:
        group: (B,) int64 query group of each row, for listwise / pairwise: the loss is taken
            within each group present in the batch (a group cut by a batch edge counts as two
            shorter lists).

    Raises:
        ValueError: for an unknown kind, one without a pointwise loss (two_tower), or a grouped
            kind without ``group``.
    """
    loss = task_implementation(kind).loss
    if loss is None:
        raise ValueError(
            f"a {kind} model's loss is taken over its towers (deepsets.ranking.InBatchSoftmax), not by task_loss"
        )
    return loss(logits, target, group)


def ablation_metric(kind: str, logits: Tensor, target: Tensor) -> Tensor:
    """The ablation metric of a task kind (``TaskTraits.ablation_metric``), higher is better,
    batched over leading dims of ``logits``.

    binary: ROC AUC; multilabel: macro ROC AUC over labels; multiclass: accuracy;
    regression: negative RMSE.

    Args:
        logits: (..., N, K).
        target: (N,) or (N, K) as the task's loss takes it.

    Raises:
        ValueError: for an unknown kind or one without an ablation metric.
    """
    metric = task_implementation(kind).ablation
    if metric is None:
        raise ValueError(f"no ablation metric for task {kind!r} (ranking kinds are ablated by their ranking metrics)")
    return metric(logits, target)
