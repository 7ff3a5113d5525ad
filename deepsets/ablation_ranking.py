"""Ranking metrics of many modality subsets at once, per query, for ablation.

A ranking metric is a mean over queries (query groups, or queries with one held-out item), so
each subset's metric is kept per query, ``(S, U)``: its mean is the value, and a bootstrap over
queries is a weighted mean with the draw counts (no re-ranking per draw).

    layout = GroupLayout(labels, group)                   # listwise / pairwise rows
    values = layout.values(scores, k=10)                  # {"ndcg_at_10", "mrr", "recall_at_10"}: (S, G)
    ranks = ...target_ranks of each query's item...       # two_tower: (S, Q, 2) above, tied
    values = deepsets.ranking.rank_values(ranks, k=10)    # {"ndcg_at_10", "recall_at_10", "mrr"}: (S, Q)
    counts = bootstrap_counts(num_units, samples=200, seed=0)       # (B, U)
    boot = bootstrap_means(values["ndcg_at_10"], counts)            # (B, S)
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from deepsets.ranking import mrr, ndcg_at_k, recall_at_k

_PADDED_BUDGET = 1 << 23  # (subset, group, slot) cells ranked per call


class GroupLayout:
    """Where each row of a listwise / pairwise set sits in a padded ``(G, L)`` group matrix.

    Only the groups with a relevant row count (as in validation); a group without one has no
    ranking to measure.

    Args:
        labels: (N,) relevance of each row (0/1 or graded).
        group: (N,) int64 query group of each row.

    Raises:
        ValueError: for mismatched lengths, or when no group has a relevant row.
    """

    def __init__(self, labels: Tensor, group: Tensor) -> None:
        if labels.numel() != group.numel():
            raise ValueError(f"need one label per row, got {labels.numel()} labels for {group.numel()} rows")
        _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)  # (N,), (G,)
        order = torch.argsort(inverse, stable=True)  # rows sorted by group, input order kept inside
        starts = torch.cumsum(counts, 0) - counts  # (G,)
        self.order, self.rows = order, inverse[order]  # (N,), (N,) group of each sorted row
        self.slot = torch.arange(group.numel()) - starts[self.rows]  # (N,) position within its group
        self.shape = (counts.numel(), int(counts.max()))
        labels = labels.reshape(-1).double()
        self.labels = torch.zeros(self.shape, dtype=torch.float64)
        self.mask = torch.zeros(self.shape, dtype=torch.bool)
        self.labels[self.rows, self.slot] = labels[order]
        self.mask[self.rows, self.slot] = True
        self.counted = (self.labels > 0).any(dim=1)  # (G,) groups with a relevant row
        if not bool(self.counted.any()):
            raise ValueError("no query group has a relevant row (label > 0): nothing to rank")
        self.labels, self.mask = self.labels[self.counted], self.mask[self.counted]  # (G', L)
        self.keep = self.counted[self.rows]  # (N,) sorted rows in a counted group
        self.rank_of_group = torch.cumsum(self.counted.long(), 0) - 1  # (G,) index among counted groups

    @property
    def num_groups(self) -> int:
        """Groups that count (with a relevant row)."""
        return int(self.labels.shape[0])

    def values(self, scores: Tensor, k: int, names: Optional[Sequence[str]] = None) -> Dict[str, Tensor]:
        """Per-group ``ndcg_at_k``, ``mrr`` and ``recall_at_k`` of every subset's scores.

        Args:
            scores: (S, N) each row's score under each subset.
            k: the cutoff.
            names: only these of the three (default: all).

        Returns:
            name -> (S, G') float64, G' the groups that count.
        """
        metrics = {
            f"ndcg_at_{k}": lambda f, labels, m: ndcg_at_k(f, labels, m, k),
            "mrr": mrr,
            f"recall_at_{k}": lambda f, labels, m: recall_at_k(f, labels, m, k),
        }
        if names is not None:
            metrics = {name: metrics[name] for name in names}
        s, _ = scores.shape
        g, length = self.labels.shape
        rows = self.rank_of_group[self.rows[self.keep]]  # (N',) counted group of each kept row
        slot = self.slot[self.keep]
        picked = scores.double()[:, self.order[self.keep]]  # (S, N')
        per_call = max(1, _PADDED_BUDGET // max(1, g * length))
        out: Dict[str, list] = {name: [] for name in metrics}
        for first in range(0, s, per_call):
            part = picked[first : first + per_call]  # (c, N')
            c = part.shape[0]
            padded = torch.zeros(c, g, length, dtype=torch.float64)
            padded[:, rows, slot] = part
            flat, labels, mask = (
                padded.view(c * g, length),
                self.labels.repeat(c, 1),
                self.mask.repeat(c, 1),
            )  # (c*G', L)
            for name, metric in metrics.items():
                out[name].append(metric(flat, labels, mask).view(c, g))
        return {name: torch.cat(parts) for name, parts in out.items()}


def bootstrap_counts(units: int, samples: int, seed: int) -> Tensor:
    """How often each of ``units`` queries is drawn in each of ``samples`` bootstrap resamples
    (with replacement, ``units`` draws each): ``(B, U)`` float64."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(units, (samples, units), generator=generator)  # (B, U)
    return torch.zeros(samples, units, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(samples, units, dtype=torch.float64)
    )


def bootstrap_means(values: Tensor, counts: Tensor) -> Tensor:
    """The mean over each bootstrap resample of per-query ``values`` (S, U): ``(B, S)``."""
    return counts @ values.double().T / counts.sum(dim=1, keepdim=True)
