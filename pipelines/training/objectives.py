"""What a training run optimizes and validates, per task kind: one object the training loop asks
for a batch's loss and for validation metrics, so the loop itself is the same for every kind.

    objective = Objective.from_config(cfg, item_log_q=ItemLogQ.from_counts(ids, counts))
    loss = objective.loss(model, batch)              # pointwise, listwise, pairwise or two_tower
    metrics = objective.new_metrics(model)
    objective.update(metrics, model, batch); metrics.compute()

| kind                         | loss                                      | batch columns used        |
|------------------------------|-------------------------------------------|---------------------------|
| binary ... regression, any   | :func:`deepsets.tasks.task_loss`          | label columns             |
| registered kind              |                                           |                           |
| listwise, pairwise           | per query group within the batch          | label + ``group_column``  |
| two_tower                    | in-batch softmax, logQ-corrected          | ``item_column``           |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from deepsets.batch import FeatureBatch
from deepsets.pipelines.training.negatives import Negatives
from deepsets.pipelines.training.ranking_metrics import GroupRankingMetrics, RetrievalMetrics
from deepsets.task_kinds import task_traits
from deepsets.tasks import task_implementation, task_loss


def labels_of(batch: FeatureBatch, columns: Sequence[str]) -> Tensor:
    """The target: one column as is ((B,) or (B, K)); several scalar columns stacked (B, K)."""
    if len(columns) == 1:
        return batch.labels[columns[0]]
    return torch.stack([batch.labels[c] for c in columns], dim=1)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


class ItemLogQ:
    """log of each item's share of the training rows: the sampling probability of an item as an
    in-batch negative, for the logQ correction.

    Args:
        ids: (I,) int64 item ids.
        counts: (I,) training rows per item.
    """

    def __init__(self, ids: np.ndarray, counts: np.ndarray) -> None:
        order = np.argsort(ids)
        self.ids = torch.from_numpy(np.asarray(ids, dtype=np.int64)[order])  # (I,) sorted
        total = float(np.sum(counts))
        self.log_q = torch.from_numpy(np.log(np.asarray(counts, dtype=np.float64)[order] / total)).float()  # (I,)
        self.unseen = math.log(1.0 / total)  # an item not in the training rows: as rare as one row

    def __call__(self, item_ids: Tensor) -> Tensor:
        """(B,) log q of each id."""
        ids = item_ids.cpu()
        at = torch.searchsorted(self.ids, ids).clamp(max=max(self.ids.numel() - 1, 0))
        found = self.ids.numel() > 0 and (self.ids[at] == ids)
        values = (
            torch.where(found, self.log_q[at], torch.full_like(self.log_q[at], self.unseen))
            if self.ids.numel()
            else torch.full(ids.shape, self.unseen)
        )
        return values.to(item_ids.device)


@dataclass
class Objective:
    """A task kind and the batch columns it reads.

    Attributes:
        kind: a task kind of ``deepsets.task_kinds.task_names()``.
        label_columns: targets (none for two_tower).
        num_outputs: logits per row.
        group_column: listwise / pairwise: the query group of each row.
        item_column: two_tower: the item id of each row.
        k: the cutoff of ranking metrics.
        item_log_q: two_tower: popularity of each item (None: no logQ correction).
        negatives: two_tower: extra negatives besides the batch's items (None: in-batch only;
            :mod:`deepsets.pipelines.training.negatives`).
    """

    kind: str
    label_columns: Tuple[str, ...]
    num_outputs: int = 1
    group_column: Optional[str] = None
    item_column: Optional[str] = None
    k: int = 10
    item_log_q: Optional[ItemLogQ] = None
    negatives: Optional[Negatives] = None

    @classmethod
    def from_config(
        cls, cfg, item_log_q: Optional[ItemLogQ] = None, negatives: Optional[Negatives] = None
    ) -> "Objective":
        """From a :class:`deepsets.pipelines.config.RunConfig`."""
        return cls(
            cfg.model.task,
            tuple(cfg.data.label_columns),
            cfg.model.num_outputs,
            cfg.data.group_column,
            cfg.data.item_column,
            cfg.task.k,
            item_log_q if cfg.task.logq else None,
            negatives,
        )

    def key_columns(self) -> list:
        """Integer columns the reader must carry as int64 (``batch.labels``)."""
        return [c for c in (self.group_column, self.item_column) if c]

    def loss(self, model: nn.Module, batch: FeatureBatch) -> Tensor:
        """The mean loss of ``batch`` (already on the model's device)."""
        if self.kind == "two_tower":
            return self._two_tower_loss(model, batch)
        logits = model(batch).logits  # (B, K)
        group = batch.labels[self.group_column] if task_traits(self.kind).grouped else None
        return task_loss(self.kind, logits.float(), labels_of(batch, self.label_columns), group)

    def _two_tower_loss(self, model: nn.Module, batch: FeatureBatch) -> Tensor:
        """Softmax over the batch's items, plus this step's sampled items (``mixed``); with
        ``catalogue``, the full softmax over the item table plus the in-batch softmax."""
        device = batch.labels[self.item_column].device
        drawn, drawn_ids = self.negatives.draw() if self.negatives is not None else (None, None)
        out = model(batch, drawn.to(device)) if drawn is not None else model(batch)
        ids = batch.labels[self.item_column]
        log_q = self.item_log_q(ids) if self.item_log_q is not None else None
        extra, extra_ids, extra_log_q = None, None, None
        if drawn is not None:
            extra, extra_ids = out.negatives, drawn_ids.to(device)
            sampled_log_q = self.item_log_q(extra_ids) if self.item_log_q is not None else None
            log_q, extra_log_q = self.negatives.log_q(log_q, sampled_log_q, batch.num_rows)
        catalogue = (
            self.negatives.catalogue_embeddings(unwrap(model).item, device) if self.negatives is not None else None
        )
        if catalogue is not None:
            # The full softmax (every item once, nothing to correct) trains the query tower against
            # the whole catalogue. Its items outside the batch carry no gradient, so it would pull
            # the item tower's items toward their queries with nothing pushing them apart (MovieLens's
            # item tower collapsed to one vector, benchmarks/RESULTS.md): it trains the query tower
            # only, and the in-batch softmax (with its logQ) trains both towers.
            queries_only = replace(out, item=out.item.detach())
            full = unwrap(model).loss(queries_only, ids, None, extra_items=catalogue[0], extra_ids=catalogue[1])
            return full + unwrap(model).loss(out, ids, log_q)
        return unwrap(model).loss(out, ids, log_q, extra_items=extra, extra_ids=extra_ids, extra_log_q=extra_log_q)

    def new_metrics(self, model: nn.Module):
        """An empty metrics accumulator for this kind (``update`` then ``compute``): the one its
        task registration gives (``deepsets.tasks``), else the ranking metrics of its queries."""
        if self.kind == "two_tower":
            return RetrievalMetrics(self.k, float(unwrap(model).loss_fn.temperature.detach()))
        metrics = task_implementation(self.kind).metrics
        if metrics is not None:
            return metrics(self.num_outputs)
        return GroupRankingMetrics(self.kind, self.k)

    def update(self, metrics, model: nn.Module, batch: FeatureBatch) -> None:
        """Add the model's output on ``batch`` (on the model's device) to ``metrics``."""
        if self.kind == "two_tower":
            out = model(batch)
            metrics.update(out.query.float(), out.item.float(), batch.labels[self.item_column])
            return
        logits = model(batch).logits.float().cpu()  # (B, K)
        target = labels_of(batch, self.label_columns).cpu()
        if task_traits(self.kind).grouped:
            metrics.update(logits, target, batch.labels[self.group_column].cpu())
        else:
            metrics.update(logits, target)
