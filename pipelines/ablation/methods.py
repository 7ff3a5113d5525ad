"""The ablation methods, each over rows encoded once (cached per-modality vectors).

    rows = CachedRows(vectors, present, target, ids, names)          # (N, M, D), (N, M), ...
    scorer = SubsetScorer(model, rows, task, bootstrap=200, seed=0, every_subset=True)
    extras = {}                                                       # what methods record besides rows
    table = [row for method in ("loo", "only", "shapley") for row in METHODS[method](scorer, extras, seed=0, per_row=False)]

Every method reruns only the fusion head with a changed presence mask (permutation: with one
modality's vectors shuffled), and gives one table row per modality: its value, its ``delta``
(the contribution) and a 95% interval from the bootstrap draws that every method shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor

from deepsets import ablation as ab
from deepsets.pipelines.ablation.report import table_row
from deepsets.task_kinds import task_traits
from deepsets.tasks import ablation_metric

MEMO_BYTES = 1 << 30
"""Scores of subsets kept for the other metrics of a ranking model (1 GiB)."""


@dataclass
class CachedRows:
    """The ablation rows, encoded once.

    Attributes:
        vectors: (N, M, D) per-modality vectors, modalities in ``names`` order.
        present: (N, M) bool.
        target: (N,) or (N, K) labels as the task's loss takes them.
        ids: (N,) row ids (the schema's id column, else the row number).
        names: the modalities.
    """

    vectors: Tensor
    present: Tensor
    target: Tensor
    ids: np.ndarray
    names: List[str]

    @property
    def num_rows(self) -> int:
        return int(self.vectors.shape[0])


class SubsetScorer:
    """Scores (logits) of the rows with only some modalities kept, and their metric values.

    The ranking scorers (:mod:`deepsets.pipelines.ablation.ranking`) keep this interface: what a
    "score" is differs (a ranking task's metric is per query), the methods do not.

    Args:
        model: a set-fusion model (``fuse(vectors, present)``).
        rows: the cached rows.
        task: the model's task kind (picks the metric: ``deepsets.tasks.ablation_metric``).
        bootstrap: resamples of rows for the intervals (0: none).
        seed: seeds the resamples.
        every_subset: fuse all ``2^M`` subsets once up front (Shapley needs them; the other
            methods then read theirs from the same scores).
    """

    def __init__(self, model, rows: CachedRows, task: str, bootstrap: int, seed: int, every_subset: bool) -> None:
        self.model, self.rows, self.task = model, rows, task
        self.num = len(self.names)
        self.boot = self.draws(bootstrap, seed)
        self.metric_names = self.metrics()
        self.metric_name = self.metric_names[0]
        self._memo: Dict[bytes, Tensor] = {}
        self._memo_bytes = 0
        self._permuted: Dict[int, Tensor] = {}
        self.every = self.fuse_subsets(ab.subset_masks(self.num)) if every_subset else None  # (2^M, N, K)
        self.full_scores = self.scores(torch.ones(1, self.num, dtype=torch.bool))  # (1, N, K)
        self.empty_scores = self.scores(torch.zeros(1, self.num, dtype=torch.bool))  # (1, N, K)

    @property
    def names(self) -> List[str]:
        return self.rows.names

    def draws(self, bootstrap: int, seed: int) -> Optional[Tensor]:
        """The bootstrap draws (here ``(B, N)`` row indices), or None for ``bootstrap = 0``."""
        return ab.bootstrap_indices(self.rows.num_rows, bootstrap, seed) if bootstrap else None

    def metrics(self) -> List[str]:
        """The metrics this scorer measures with, the first the main one."""
        return [task_traits(self.task).ablation_metric]

    @property
    def units(self) -> int:
        """What the bootstrap resamples: rows here, queries for ranking tasks."""
        return self.rows.num_rows

    @property
    def full(self) -> float:
        """The metric with every modality kept."""
        return float(self.metric(self.full_scores)[0])

    @property
    def empty(self) -> float:
        """The metric with none kept."""
        return float(self.metric(self.empty_scores)[0])

    @property
    def full_boot(self) -> Optional[Tensor]:
        """(B, 1) the full metric on every bootstrap draw, or None."""
        return self.boot_metric(self.full_scores)

    def fuse_subsets(self, masks: Tensor) -> Tensor:
        """(S, M) subsets -> (S, N, K) logits, computed."""
        return ab.subset_scores(self.model, self.rows.vectors, self.rows.present, masks)

    def scores(self, masks: Tensor) -> Tensor:
        """(S, M) subsets -> (S, N, K) logits. Scored subsets are kept while they fit in
        :data:`MEMO_BYTES` when there are several metrics (every method runs once per metric),
        so a subset is fused once, not once per metric."""
        if self.every is not None:
            return self.every[ab.subset_index(masks)]
        keys = [bytes(mask.numpy().tobytes()) for mask in masks]
        missing = {
            key: i for i, key in reversed(list(enumerate(keys))) if key not in self._memo
        }  # each distinct subset once
        fresh = dict(zip(missing, self.fuse_subsets(masks[list(missing.values())]))) if missing else {}
        budget = MEMO_BYTES if len(self.metric_names) > 1 else 0
        for key, scores in fresh.items():
            if self._memo_bytes + scores.numel() * scores.element_size() <= budget:
                self._memo[key] = scores
                self._memo_bytes += scores.numel() * scores.element_size()
        return torch.stack([fresh[key] if key in fresh else self._memo[key] for key in keys])

    def permuted_scores(self, seed: int) -> Tensor:
        """(M, N, K) logits with all modalities kept and modality m's vectors shuffled among the
        rows that have it (one seeded generator over the modalities in order)."""
        if seed not in self._permuted:
            generator = torch.Generator().manual_seed(seed)
            all_mask = torch.ones(1, self.num, dtype=torch.bool)
            rows = self.rows
            self._permuted[seed] = torch.cat(
                [
                    ab.subset_scores(
                        self.model,
                        ab.permuted_vectors(rows.vectors, rows.present, m, generator),
                        rows.present,
                        all_mask,
                    )
                    for m in range(self.num)
                ]
            )
        return self._permuted[seed]

    def only_masks(self) -> tuple[Tensor, Tensor]:
        """``(keep, base)``, (M, M) each: the only-one subset of each modality and the subset
        its gain is measured from (here: just m, and nothing)."""
        return torch.eye(self.num, dtype=torch.bool), torch.zeros(self.num, self.num, dtype=torch.bool)

    def use_metric(self, name: str) -> None:
        """Measure with ``name`` (one of :attr:`metric_names`) from now on."""
        if name not in self.metric_names:
            raise ValueError(f"unknown metric {name!r}; this model is measured by {', '.join(self.metric_names)}")
        self.metric_name = name

    def metric(self, scores: Tensor) -> Tensor:
        """(S, N, K) -> (S,) metric values on all rows."""
        return ablation_metric(self.task, scores, self.rows.target)

    def boot_metric(self, scores: Tensor) -> Optional[Tensor]:
        """(S, N, K) -> (B, S) metric values on every bootstrap draw of rows (None: no draws)."""
        if self.boot is None:
            return None
        return torch.stack(
            [ablation_metric(self.task, scores[..., idx, :], self.rows.target[idx]) for idx in self.boot]
        )

    def per_row_values(self, scores: Tensor) -> Tensor:
        """(S, N, K) -> (S, N): what per-row Shapley splits (here each row's score)."""
        return scores[:, :, 0].double()


def _drops(method: str, scorer: SubsetScorer, scores: Tensor) -> List[dict]:
    """Rows whose delta is the full metric minus the metric of ``scores`` (M, N, K), modality by modality."""
    values, samples = scorer.metric(scores), scorer.boot_metric(scores)
    full, full_boot = scorer.full, scorer.full_boot
    return [
        table_row(
            method, name, values[m], full - values[m], None if samples is None else full_boot[:, 0] - samples[:, m]
        )
        for m, name in enumerate(scorer.names)
    ]


def leave_one_out(scorer: SubsetScorer, extras: dict, **_) -> List[dict]:
    """The metric drop with each modality masked as missing."""
    return _drops("loo", scorer, scorer.scores(~torch.eye(scorer.num, dtype=torch.bool)))  # (M, N, K): all but m


def only_one(scorer: SubsetScorer, extras: dict, **_) -> List[dict]:
    """The metric with only each modality, as a gain over none present (two-tower: over its
    tower empty, the other tower whole; see the scorer's ``only_masks``)."""
    keep, base = scorer.only_masks()  # (M, M) each
    scores, base_scores = scorer.scores(keep), scorer.scores(base)  # (M, N, K) each
    values, base_values = scorer.metric(scores), scorer.metric(base_scores)
    samples, base_samples = scorer.boot_metric(scores), scorer.boot_metric(base_scores)
    return [
        table_row(
            "only",
            name,
            values[m],
            values[m] - base_values[m],
            None if samples is None else samples[:, m] - base_samples[:, m],
        )
        for m, name in enumerate(scorer.names)
    ]


def permutation(scorer: SubsetScorer, extras: dict, seed: int = 0, **_) -> List[dict]:
    """The metric drop when a modality's vectors are shuffled among the rows that have it."""
    return _drops("permute", scorer, scorer.permuted_scores(seed))  # (M, N, K)


SAMPLED_CHUNK = 16
"""Orders whose prefix subsets are fused together by sampled Shapley (bounds its memory)."""


def shapley(
    scorer: SubsetScorer, extras: dict, per_row: bool = False, permutations: Optional[int] = None, seed: int = 0, **_
) -> List[dict]:
    """Shapley values: exact over all ``2^M`` subsets, or, with ``permutations``, estimated
    from that many random orders with a standard error per modality (the rows' ``se``).

    Records the efficiency check in ``extras["shapley_efficiency"]``, the estimator in
    ``extras["shapley_estimator"]`` and, with ``per_row``, each row's contributions to its
    score in ``extras["per_row"]``.
    """
    if permutations:
        return _sampled_shapley(scorer, extras, per_row, permutations, seed)
    scores = scorer.every  # (S, N, K)
    weights = ab.shapley_matrix(scorer.num)  # (M, S)
    values = scorer.metric(scores).double()  # (S,)
    phi = weights @ values  # (M,)
    samples = scorer.boot_metric(scores)  # (B, S)
    phi_boot = None if samples is None else samples.double() @ weights.T  # (B, M)
    names = scorer.names
    _record(extras, phi, values[-1], values[0], int(scores.shape[0]), {"kind": "exact"})
    if per_row:
        row_values = scorer.per_row_values(scores)  # (S, N)
        _record_per_row(
            extras, scorer, weights @ row_values, row_values[-1], row_values[0]
        )  # (M, N): per-row contributions
    return [
        table_row("shapley", name, phi[m], phi[m], None if phi_boot is None else phi_boot[:, m])
        for m, name in enumerate(names)
    ]


def _sampled_shapley(scorer: SubsetScorer, extras: dict, per_row: bool, permutations: int, seed: int) -> List[dict]:
    """Permutation-sampled Shapley (``deepsets.ablation.permutation_shapley``), fusing the
    prefix subsets of ``SAMPLED_CHUNK`` orders at a time."""
    orders, masks = ab.permutation_prefixes(scorer.num, permutations, seed)  # (P, M), (P, M+1, M)
    values, boot, rows, fused = [], [], [], 0
    for start in range(0, orders.shape[0], SAMPLED_CHUNK):
        chunk = masks[start : start + SAMPLED_CHUNK]  # (c, M+1, M)
        unique, where = torch.unique(chunk.reshape(-1, scorer.num), dim=0, return_inverse=True)  # (U, M), (c*(M+1),)
        scores = scorer.scores(unique)  # (U, N, K)
        fused += unique.shape[0]
        values.append(scorer.metric(scores).double()[where].view(chunk.shape[:2]))  # (c, M+1)
        samples = scorer.boot_metric(scores)  # (B, U)
        if samples is not None:
            boot.append(samples.double()[:, where].view(-1, *chunk.shape[:2]))  # (B, c, M+1)
        if per_row:
            rows.append(scorer.per_row_values(scores)[where].view(*chunk.shape[:2], -1).transpose(1, 2))  # (c, N, M+1)
    values = torch.cat(values)  # (P, M+1)
    phi, se = ab.permutation_shapley(values, orders)  # (M,), (M,)
    phi_boot = ab.permutation_shapley(torch.cat(boot, dim=1), orders)[0] if boot else None  # (B, M)
    full, empty = values[0, -1], values[0, 0]
    names = scorer.names
    _record(
        extras,
        phi,
        full,
        empty,
        fused,
        {
            "kind": "sampled",
            "permutations": int(orders.shape[0]),
            "standard_error": {n: float(se[m]) for m, n in enumerate(names)},
        },
    )
    if per_row:
        row_phi = ab.permutation_shapley(torch.cat(rows).transpose(0, 1), orders)[0].T  # (M, N)
        _record_per_row(
            extras,
            scorer,
            row_phi,
            scorer.per_row_values(scorer.full_scores)[0],
            scorer.per_row_values(scorer.empty_scores)[0],
        )
    table = [
        table_row("shapley", name, phi[m], phi[m], None if phi_boot is None else phi_boot[:, m])
        for m, name in enumerate(names)
    ]
    for m, row in enumerate(table):
        row["se"] = float(se[m])
    return table


def _record(extras: dict, phi: Tensor, full, empty, fused: int, estimator: dict) -> None:
    extras["shapley_efficiency"] = {
        "sum_of_values": float(phi.sum()),
        "full_minus_empty": float(full - empty),
        "abs_error": float(abs(phi.sum() - (full - empty))),
        "subsets": fused,
    }
    extras["shapley_estimator"] = estimator


def _record_per_row(extras: dict, scorer: SubsetScorer, row_phi: Tensor, full: Tensor, empty: Tensor) -> None:
    extras["per_row"] = {
        "ids": scorer.rows.ids,
        "phi": row_phi.T.numpy(),
        "full": full.double().numpy(),
        "empty": empty.double().numpy(),
        "names": scorer.names,
    }


def max_pool(scorer: SubsetScorer, extras: dict, **_) -> List[dict]:
    """The share of (row, dimension) cells each modality wins in a max-pool DeepSet head."""
    with torch.inference_mode():
        winners = scorer.model.fuse(scorer.rows.vectors, scorer.rows.present).winners  # (N, D)
    shares = ab.max_pool_wins(winners, scorer.num)
    return [table_row("maxpool", name, shares[m], shares[m], None) for m, name in enumerate(scorer.names)]


METHODS: Dict[str, Callable[..., List[dict]]] = {
    "loo": leave_one_out,
    "only": only_one,
    "permute": permutation,
    "shapley": shapley,
    "maxpool": max_pool,
}
"""Method name -> ``method(scorer, extras, seed=..., per_row=..., permutations=...)`` returning table rows."""
