"""Validation metrics of the ranking task kinds, accumulated over batches and computed once over
the whole validation set (so no query group and no item is cut by a batch edge).

    metrics = GroupRankingMetrics("listwise", k=10)        # rows ranked within query groups
    metrics.update(logits, batch.labels["clicked"], batch.labels["query_id"])
    metrics.compute()   # {"loss": ..., "ndcg_at_10": ..., "mrr": ..., "recall_at_10": ..., "groups": ...}

    metrics = RetrievalMetrics(k=10, temperature=0.05)     # two_tower
    metrics.update(out.query, out.item, batch.labels["item_id"])
    metrics.compute()   # each row's item ranked among every distinct item of the set

| kind       | metrics (besides ``loss``)                                                        |
|------------|-----------------------------------------------------------------------------------|
| listwise   | ``ndcg_at_k``, ``mrr``, ``recall_at_k`` per group (gains ``2^label - 1``), mean    |
| pairwise   | over the groups with a relevant row; ``groups``: how many counted                 |
| two_tower  | ``ndcg_at_k``, ``recall_at_k``, ``mrr`` of each row's item among the distinct      |
|            | items of the set (``corpus_items``); ``loss``: softmax cross-entropy over them    |

Memory: every score / embedding of the set is kept until :meth:`compute` (validation sets,
not training sets). Retrieval scores are computed in chunks of 1,024 queries.
"""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor

from deepsets.ranking import (
    first_of_each,
    listwise_softmax_loss_sum,
    mrr,
    ndcg_at_k,
    pad_groups,
    pairwise_logistic_loss_sum,
    rank_metrics,
    recall_at_k,
    target_ranks,
)
from deepsets.task_kinds import grouped_tasks

_CHUNK = 1024
_PAIR_BUDGET = 1 << 22  # padded (group, row, row) entries per loss chunk


def grouped_loss(kind: str, scores: Tensor, labels: Tensor, group: Tensor) -> float:
    """The listwise (mean over groups with a relevant row) or pairwise (mean over ordered
    pairs) loss of a whole set, taken over chunks of similar-size groups: memory follows the
    groups' own sizes (sum of L^2), not the number of groups times the largest one squared."""
    _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)  # (N,), (G,)
    by_size = torch.argsort(counts)  # group indices, smallest first
    loss_sum = listwise_softmax_loss_sum if kind == "listwise" else pairwise_logistic_loss_sum  # (sum, groups or pairs)
    total, weight, start = 0.0, 0, 0
    while start < counts.numel():
        stop = start + 1
        while stop < counts.numel() and (stop + 1 - start) * int(counts[by_size[stop]]) ** 2 <= _PAIR_BUDGET:
            stop += 1
        chosen = torch.zeros(counts.numel(), dtype=torch.bool)
        chosen[by_size[start:stop]] = True
        rows = chosen[inverse]
        part, n = loss_sum(*pad_groups(scores[rows], labels[rows], group[rows]))  # over (g, L) padded groups
        total, weight, start = total + float(part), weight + n, stop
    return total / weight if weight else 0.0


class GroupRankingMetrics:
    """listwise / pairwise validation: scores ranked within each query group.

    Args:
        kind: listwise or pairwise (the ``loss`` reported is that kind's loss over whole groups).
        k: the cutoff of ``ndcg_at_k`` and ``recall_at_k``.

    Raises:
        ValueError: for another kind or k < 1.
    """

    def __init__(self, kind: str, k: int = 10) -> None:
        if kind not in grouped_tasks() or k < 1:
            raise ValueError(f"GroupRankingMetrics needs a kind in {grouped_tasks()} and k >= 1, got {kind!r}, k={k}")
        self.kind, self.k = kind, k
        self.reset()

    def reset(self) -> None:
        self._scores: List[Tensor] = []
        self._labels: List[Tensor] = []
        self._groups: List[Tensor] = []
        self.rows = 0

    def update(self, logits: Tensor, target: Tensor, group: Tensor) -> None:
        """Add a batch: ``logits`` (B, 1) or (B,), relevance ``target`` (B,), ``group`` (B,) int64.

        Raises:
            ValueError: when the three do not hold one value per row.
        """
        B = logits.shape[0]
        if logits.numel() != B or target.numel() != B or group.numel() != B:
            raise ValueError(
                f"need one score, label and group per row, got {tuple(logits.shape)}, {tuple(target.shape)}, {tuple(group.shape)}"
            )
        self._scores.append(logits.detach().reshape(B).double().cpu())
        self._labels.append(target.detach().reshape(B).double().cpu())
        self._groups.append(group.detach().reshape(B).cpu())
        self.rows += B

    def compute(self) -> Dict[str, float]:
        """Metrics over every group seen since the last reset.

        Raises:
            ValueError: when no row was added.
        """
        if self.rows == 0:
            raise ValueError(f"no rows to compute {self.kind} metrics on: call update() with at least one row first")
        scores, labels, group = torch.cat(self._scores), torch.cat(self._labels), torch.cat(self._groups)
        out = {"loss": grouped_loss(self.kind, scores, labels, group)}
        padded, relevance, mask = pad_groups(scores, labels, group)  # (G, L) each
        counted = (torch.where(mask, relevance, 0.0) > 0).any(dim=1)  # (G,) groups with a relevant row
        out["groups"] = float(counted.sum())
        for name, values in (
            (f"ndcg_at_{self.k}", ndcg_at_k(padded, relevance, mask, self.k)),
            ("mrr", mrr(padded, relevance, mask)),
            (f"recall_at_{self.k}", recall_at_k(padded, relevance, mask, self.k)),
        ):
            out[name] = float(values[counted].mean()) if counted.any() else float("nan")
        return out


class RetrievalMetrics:
    """two_tower validation: each row's item ranked among every distinct item of the set.

    The corpus is the set's distinct item ids, each with the item embedding of its first row
    (the item tower sees only item modalities, so every row of an item embeds it alike).

    Args:
        k: the cutoff of ``ndcg_at_k`` and ``recall_at_k``.
        temperature: the model's softmax temperature, for ``loss``.
    """

    def __init__(self, k: int = 10, temperature: float = 1.0) -> None:
        if k < 1 or temperature <= 0:
            raise ValueError(f"need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
        self.k, self.temperature = k, temperature
        self.reset()

    def reset(self) -> None:
        self._queries: List[Tensor] = []
        self._items: List[Tensor] = []
        self._ids: List[Tensor] = []
        self.rows = 0

    def update(self, queries: Tensor, items: Tensor, item_ids: Tensor) -> None:
        """Add a batch of (B, D) query and item embeddings and the (B,) item ids.

        Raises:
            ValueError: for mismatched shapes.
        """
        if queries.shape != items.shape or queries.dim() != 2 or item_ids.numel() != queries.shape[0]:
            raise ValueError(
                f"need (B, D) queries and items and (B,) item ids, got {tuple(queries.shape)}, {tuple(items.shape)}, {tuple(item_ids.shape)}"
            )
        self._queries.append(queries.detach().float().cpu())
        self._items.append(items.detach().float().cpu())
        self._ids.append(item_ids.detach().reshape(-1).cpu())
        self.rows += queries.shape[0]

    def compute(self) -> Dict[str, float]:
        """Metrics over every row added since the last reset.

        Raises:
            ValueError: when no row was added.
        """
        if self.rows == 0:
            raise ValueError("no rows to compute two_tower metrics on: call update() with at least one row first")
        queries, items, ids = (
            torch.cat(self._queries),
            torch.cat(self._items),
            torch.cat(self._ids),
        )  # (N, D), (N, D), (N,)
        corpus_ids, first, _ = first_of_each(ids)  # (C,) distinct items, each one's first row
        target = torch.searchsorted(corpus_ids, ids)  # (N,) each row's item in the corpus
        corpus = items[first]  # (C, D)
        ranks, loss_sum = [], 0.0
        for start in range(0, queries.shape[0], _CHUNK):
            scores = queries[start : start + _CHUNK] @ corpus.T  # (q, C)
            ranks.append(target_ranks(scores, target[start : start + _CHUNK]))
            loss_sum += float(
                F.cross_entropy(scores / self.temperature, target[start : start + _CHUNK], reduction="sum")
            )
        out = {"loss": loss_sum / queries.shape[0], **rank_metrics(torch.cat(ranks), self.k)}
        out["corpus_items"] = float(corpus_ids.numel())
        return out
