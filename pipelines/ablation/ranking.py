"""Ablation of ranking models: the methods of :mod:`deepsets.pipelines.ablation.methods` with ranking
metrics, intervals by bootstrap over queries.

| task               | a "score" of a subset                     | metrics (mean over queries)              |
|--------------------|-------------------------------------------|------------------------------------------|
| listwise, pairwise | each row's ranking score (S, N, 1)        | ``ndcg_at_k``, ``mrr``, ``recall_at_k``   |
|                    |                                           | per query group with a relevant row      |
| two_tower          | each query's rank of its held-out item    | ``ndcg_at_k``, ``recall_at_k``, ``mrr``   |
|                    | among the item corpus (S, Q, 2)           | per query                                |

A two-tower model's players are both towers' modalities. A query-tower subset changes the
query embeddings; an item-tower subset re-embeds the corpus from its cached modality vectors
(the item encoders never run again). "Only" keeps one modality in its tower and the other
tower whole; the two towers are also scored as two players (:func:`tower_rows`).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from deepsets import ablation as ab
from deepsets.ablation_ranking import GroupLayout, bootstrap_counts, bootstrap_means
from deepsets.pipelines.ablation.methods import CachedRows, SubsetScorer
from deepsets.pipelines.ablation.report import table_row
from deepsets.ranking import rank_values, target_ranks

_QUERY_CHUNK = 1024


class PerQueryScorer(SubsetScorer):
    """A scorer whose metric is a mean over queries (query groups, or queries): the subclass
    gives each query's value (:meth:`query_values`); the metric is their mean, a bootstrap
    resample their weighted mean."""

    _last: Optional[tuple] = None  # (scores, metric, values): metric and boot_metric of one scores rank once

    def query_values(self, scores: Tensor) -> Tensor:
        """(S, N, 1) -> (S, U) the current metric of every query."""
        raise NotImplementedError

    def unit_values(self, scores: Tensor) -> Tensor:
        """:meth:`query_values`, computed once for the scores asked about last."""
        if self._last is None or self._last[0] is not scores or self._last[1] != self.metric_name:
            self._last = (scores, self.metric_name, self.query_values(scores))
        return self._last[2]

    def metric(self, scores: Tensor) -> Tensor:
        return self.unit_values(scores).mean(dim=1)

    def boot_metric(self, scores: Tensor) -> Optional[Tensor]:
        return None if self.boot is None else bootstrap_means(self.unit_values(scores), self.boot)


class GroupedScorer(PerQueryScorer):
    """listwise / pairwise: rows ranked within their query groups.

    Args:
        model, rows, task, every_subset: as :class:`SubsetScorer` (``rows.target``: relevance).
        bootstrap: resamples of query groups for the intervals (0: none).
        seed: seeds the resamples.
        group: (N,) int64 query group of each row.
        k: the cutoff of ``ndcg_at_k`` and ``recall_at_k``.

    Raises:
        ValueError: when no group has a relevant row.
    """

    def __init__(
        self, model, rows: CachedRows, task: str, bootstrap: int, seed: int, every_subset: bool, group: Tensor, k: int
    ) -> None:
        self.layout, self.k = GroupLayout(rows.target, group), k
        super().__init__(model, rows, task, bootstrap, seed, every_subset)

    def draws(self, bootstrap: int, seed: int) -> Optional[Tensor]:
        return bootstrap_counts(self.layout.num_groups, bootstrap, seed) if bootstrap else None  # (B, G)

    def metrics(self) -> List[str]:
        return [f"ndcg_at_{self.k}", "mrr", f"recall_at_{self.k}"]

    @property
    def units(self) -> int:
        return self.layout.num_groups

    def query_values(self, scores: Tensor) -> Tensor:
        """(S, N, 1) -> (S, G) the metric of every counted query group."""
        return self.layout.values(scores[:, :, 0], self.k, [self.metric_name])[self.metric_name]


class RetrievalScorer(PerQueryScorer):
    """two_tower: each query's held-out item ranked among an item corpus.

    Args:
        model: a :class:`deepsets.two_tower.TwoTowerModel`.
        queries: the query rows (query-tower vectors; ``target``: (Q,) each row's item, as an
            index into ``corpus``).
        corpus: the items (item-tower vectors; ``ids``: their item ids).
        bootstrap: resamples of queries for the intervals (0: none).
        seed: seeds the resamples.
        every_subset: fuse all ``2^M`` subsets up front.
        k: the cutoff of ``ndcg_at_k`` and ``recall_at_k``.
        exclude: ``(query row, corpus index)`` int64 pairs left out of each query's ranking
            (already seen items), or None.
        progress: a progress bar over the corpus re-embeddings.
    """

    def __init__(
        self,
        model,
        queries: CachedRows,
        corpus: CachedRows,
        bootstrap: int,
        seed: int,
        every_subset: bool,
        k: int,
        exclude: Optional[tuple[Tensor, Tensor]] = None,
        progress: bool = False,
    ) -> None:
        self.corpus, self.k, self.progress = corpus, k, progress
        self.exclusions: Optional[dict] = None  # what --exclude matched (set by the job)
        self.query_count = len(queries.names)
        self.exclude = _sorted_pairs(exclude)
        super().__init__(model, queries, "two_tower", bootstrap, seed, every_subset)

    @property
    def names(self) -> List[str]:
        return list(self.rows.names) + list(self.corpus.names)

    @property
    def towers(self) -> Dict[str, List[str]]:
        return {"query": list(self.rows.names), "item": list(self.corpus.names)}

    def draws(self, bootstrap: int, seed: int) -> Optional[Tensor]:
        return bootstrap_counts(self.rows.num_rows, bootstrap, seed) if bootstrap else None  # (B, Q)

    def metrics(self) -> List[str]:
        return [f"ndcg_at_{self.k}", f"recall_at_{self.k}", "mrr"]

    @property
    def units(self) -> int:
        return self.rows.num_rows

    def fuse_subsets(self, masks: Tensor) -> Tensor:
        """(S, M) subsets -> (S, Q, 2) float32 where each query's item ranks (candidates above it,
        candidates tied with it; :func:`deepsets.ranking.target_ranks`): the corpus embedded once
        per distinct item-tower part, the queries once per distinct query-tower part."""
        mq = self.query_count
        out = torch.empty(masks.shape[0], self.rows.num_rows, 2, dtype=torch.float32)  # counts, exact below 2^24 items
        item_parts, which = torch.unique(masks[:, mq:], dim=0, return_inverse=True)  # (I, Mi), (S,)
        query_cache: Dict[bytes, Tensor] = {}
        for j in tqdm(
            range(item_parts.shape[0]),
            desc="item-tower subsets",
            unit="subset",
            disable=None if self.progress and len(item_parts) > 1 else True,
        ):
            corpus = self._embed(self.model.item, self.corpus, item_parts[j])  # (C, D)
            for s in (which == j).nonzero().squeeze(1).tolist():
                key = masks[s, :mq].numpy().tobytes()
                if key not in query_cache:
                    query_cache[key] = self._embed(self.model.query, self.rows, masks[s, :mq])  # (Q, D)
                out[s] = self._ranks(query_cache[key], corpus)
        return out

    def permuted_scores(self, seed: int) -> Tensor:
        """(M, Q, 2) ranks with modality m's vectors shuffled among the queries (query tower) or
        the corpus items (item tower) that have it."""
        if seed not in self._permuted:
            generator = torch.Generator().manual_seed(seed)
            everything = torch.ones(self.num, dtype=torch.bool)
            queries = self._embed(self.model.query, self.rows, everything[: self.query_count])  # (Q, D)
            corpus = self._embed(self.model.item, self.corpus, everything[self.query_count :])  # (C, D)
            ranks = []
            for m in range(self.num):
                if m < self.query_count:
                    shuffled = ab.permuted_vectors(self.rows.vectors, self.rows.present, m, generator)
                    ranks.append(
                        self._ranks(
                            self._embed(self.model.query, self.rows, everything[: self.query_count], shuffled), corpus
                        )
                    )
                else:
                    shuffled = ab.permuted_vectors(
                        self.corpus.vectors, self.corpus.present, m - self.query_count, generator
                    )
                    ranks.append(
                        self._ranks(
                            queries, self._embed(self.model.item, self.corpus, everything[self.query_count :], shuffled)
                        )
                    )
            self._permuted[seed] = torch.stack(ranks)  # (M, Q, 2)
        return self._permuted[seed]

    def only_masks(self) -> tuple[Tensor, Tensor]:
        """Only m in its tower, the other tower whole; measured from its tower empty."""
        base = torch.zeros(self.num, self.num, dtype=torch.bool)
        for m in range(self.num):
            if m < self.query_count:
                base[m, self.query_count :] = True
            else:
                base[m, : self.query_count] = True
        return base | torch.eye(self.num, dtype=torch.bool), base

    def query_values(self, scores: Tensor) -> Tensor:
        """(S, Q, 2) ranks -> (S, Q) the metric of every query."""
        return rank_values(scores, self.k)[self.metric_name]

    def per_row_values(self, scores: Tensor) -> Tensor:
        """(S, Q, 2) -> (S, Q): per-query Shapley splits each query's own metric value."""
        return self.unit_values(scores)

    @staticmethod
    def _embed(tower, rows: CachedRows, keep: Tensor, vectors: Optional[Tensor] = None) -> Tensor:
        """(N, D) unit-length embeddings of ``rows`` by ``tower`` with only ``keep`` (M,) kept."""
        return ab.subset_scores(tower, rows.vectors if vectors is None else vectors, rows.present, keep.unsqueeze(0))[0]

    def _ranks(self, queries: Tensor, corpus: Tensor) -> Tensor:
        """(Q, 2) float64 where each query's item ranks among the corpus (above it, tied with it),
        excluded pairs left out."""
        ranks = []
        for start in range(0, queries.shape[0], _QUERY_CHUNK):
            stop = min(start + _QUERY_CHUNK, queries.shape[0])
            scores = queries[start:stop] @ corpus.T  # (q, C)
            ranks.append(
                target_ranks(scores, self.rows.target[start:stop], self._excluded(start, stop, corpus.shape[0]))
            )
        return torch.cat(ranks)

    def _excluded(self, start: int, stop: int, items: int) -> Optional[Tensor]:
        if self.exclude is None:
            return None
        rows, cols = self.exclude
        first, last = torch.searchsorted(rows, torch.tensor([start, stop])).tolist()
        mask = torch.zeros(stop - start, items, dtype=torch.bool)  # (q, C)
        mask[rows[first:last] - start, cols[first:last]] = True
        return mask


def _sorted_pairs(pairs: Optional[tuple[Tensor, Tensor]]) -> Optional[tuple[Tensor, Tensor]]:
    if pairs is None:
        return None
    rows, cols = pairs
    order = torch.argsort(rows, stable=True)
    return rows[order], cols[order]


TOWER_NAMES = {"query": "query tower", "item": "item tower"}


def tower_rows(scorer: RetrievalScorer, methods: List[str]) -> List[dict]:
    """The two towers as two players, for the asked methods among loo and shapley: leave-one-out
    drops a whole tower (its embedding then no longer depends on the row), Shapley splits
    ``v(both) - v(neither)`` between the towers."""
    mq, num = scorer.query_count, scorer.num
    masks = torch.zeros(4, num, dtype=torch.bool)  # neither, query only, item only, both
    masks[1, :mq] = masks[2, mq:] = masks[3] = True
    scores = scorer.scores(masks)  # (4, Q, 2)
    values, samples = scorer.metric(scores).double(), scorer.boot_metric(scores)  # (4,), (B, 4)
    out = []
    for side, (alone, other) in (("query", (1, 2)), ("item", (2, 1))):
        name = TOWER_NAMES[side]

        def at(v):
            return {
                "loo": v[..., 3] - v[..., other],
                "shapley": 0.5 * (v[..., alone] - v[..., 0] + v[..., 3] - v[..., other]),
            }

        point, boot = at(values), None if samples is None else at(samples.double())
        for method in ("loo", "shapley"):
            if method in methods:
                out.append(
                    table_row(
                        method,
                        name,
                        values[3] - point[method] if method == "loo" else point[method],
                        point[method],
                        None if boot is None else boot[method],
                    )
                )
    return out


def exclusion_pairs(excluded, query_ids: np.ndarray, targets: Tensor) -> tuple[tuple[Tensor, Tensor], dict]:
    """``(query row, corpus index)`` pairs of every query row from an ``Exclusions`` keyed by
    query id (a query id on several rows excludes on each), without the pairs naming a row's
    own held-out item (it is never left out), and what was matched.

    Returns:
        The pairs, and counts: ``pairs`` read, ``applied`` (row, item) pairs, ``queries_matched``
        rows with something excluded, ``held_out_item_pairs`` skipped, ``unmatched_query_ids``
        ids of the file that no input row has.
    """
    rows, cols, held_out = [], [], 0
    for row, query in enumerate(query_ids.tolist()):
        positions = excluded.of(query)
        if positions.size:
            keep = positions != int(targets[row])
            held_out += int((~keep).sum())
            if keep.any():
                rows.append(np.full(int(keep.sum()), row, dtype=np.int64))
                cols.append(positions[keep])
    pairs = (
        (torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols)))
        if rows
        else (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    )
    unmatched = len(set(excluded.positions) - set(query_ids.tolist()))
    return pairs, {
        "pairs": excluded.pairs,
        "applied": int(pairs[0].numel()),
        "queries_matched": len(rows),
        "held_out_item_pairs": held_out,
        "unmatched_query_ids": unmatched,
    }
