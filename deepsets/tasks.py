"""Task heads on the fused embedding, and their losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepsets.choices import GROUPED_TASKS, HEAD_TASKS, TASKS
from deepsets.ranking import listwise_softmax_loss, pad_groups, pairwise_logistic_loss


class TaskHead(nn.Module):
    """A linear layer from the fused embedding to the task's logits.

    Args:
        in_dim: fused embedding width.
        kind: binary (1 logit), multilabel (one logit per label), multiclass (one per class),
            regression (one value per target), listwise / pairwise (1 ranking score).
        num_outputs: labels / classes / targets (binary, listwise, pairwise: must be 1).

    Raises:
        ValueError: for an unknown kind or a bad ``num_outputs``.
    """

    def __init__(self, in_dim: int, kind: str, num_outputs: int = 1) -> None:
        super().__init__()
        if kind not in HEAD_TASKS:
            raise ValueError(f"task kind must be one of {HEAD_TASKS}, got {kind!r}")
        if num_outputs < 1 or (kind in ("binary",) + GROUPED_TASKS and num_outputs != 1) or (kind == "multiclass" and num_outputs < 2):
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
        ValueError: for an unknown kind, or a grouped kind without ``group``.
    """
    if kind in GROUPED_TASKS:
        if group is None:
            raise ValueError(f"a {kind} loss needs the query group of every row")
        if target.numel() != logits.numel() or group.numel() != logits.numel():
            raise ValueError(f"a {kind} loss needs one score, one relevance and one group per row, got {tuple(logits.shape)}, {tuple(target.shape)}, {tuple(group.shape)}")
        scores, labels, mask = pad_groups(logits.reshape(-1), target.reshape(-1), group.reshape(-1))  # (G, L) each
        loss = listwise_softmax_loss if kind == "listwise" else pairwise_logistic_loss
        return loss(scores, labels, mask)
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), target.reshape(-1).to(logits.dtype))
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    if kind == "multiclass":
        return F.cross_entropy(logits, target.reshape(-1).to(torch.int64))
    if kind == "regression":
        return F.mse_loss(logits.reshape(target.shape), target.to(logits.dtype))
    raise ValueError(f"task kind must be one of {TASKS}, got {kind!r}")
