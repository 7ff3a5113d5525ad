"""Validation sharded over every rank, with metrics computed exactly over the union.

Each rank runs the model on its share of the validation rows and records what it would add to
the metrics (the arguments of ``metrics.update``: logits, targets, groups or embeddings, on the
CPU). Rank 0 gathers every rank's records and replays them into one accumulator, so whole-set
metrics (AUC, average precision, retrieval ranks over the union's corpus) are exactly those of
one process reading every row.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional

import torch
from torch import nn

from deepsets.pipelines.training.objectives import Objective


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """bf16 (or ``dtype``) autocast on ``device``; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class RecordedUpdates:
    """Stands in for a metrics accumulator: keeps the arguments of every ``update`` call."""

    def __init__(self) -> None:
        self.calls: List[tuple] = []

    def update(self, *tensors: torch.Tensor) -> None:
        self.calls.append(tuple(t.detach().cpu() for t in tensors))


def evaluate_sharded(
    model: nn.Module,
    batches,
    objective: Objective,
    device: torch.device,
    rank: int,
    world: int,
    amp_dtype: Optional[torch.dtype] = None,
) -> Optional[Dict[str, float]]:
    """The objective's metrics over the union of every rank's ``batches``.

    Every rank must call it (it gathers); with ``world == 1`` it is a plain evaluation.

    Args:
        batches: this rank's share of the validation batches.

    Returns:
        The metrics on rank 0; None on the other ranks.
    """
    recorded = RecordedUpdates()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            with autocast(device, amp_dtype):
                objective.update(recorded, model, batch.to(device))
    model.train(was_training)
    every_rank = [recorded.calls]
    if world > 1 and torch.distributed.is_initialized():
        every_rank = [None] * world if rank == 0 else None
        torch.distributed.gather_object(recorded.calls, every_rank, dst=0)
    if rank != 0:
        return None
    metrics = objective.new_metrics(model)
    for calls in every_rank:
        for tensors in calls:
            metrics.update(*tensors)
    return metrics.compute()
