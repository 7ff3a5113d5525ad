"""Which epoch's model a run keeps, and when it stops early (torch-free: the config checks it).

What each task kind reports and selects on by default is declared in ``deepsets.task_kinds``
(``TaskTraits.metrics``, ``select``, ``lower_is_better``); the built-in kinds:

| task kind            | validation metrics (``valid_*``)                 | selected on by default  |
|----------------------|--------------------------------------------------|-------------------------|
| binary               | loss, auc, log_loss                              | ``valid_auc``           |
| multilabel           | loss, f1_micro, f1_macro, map                    | ``valid_map``           |
| multiclass           | loss, accuracy                                   | ``valid_accuracy``      |
| regression           | loss, rmse                                       | ``valid_rmse``          |
| listwise, pairwise   | loss, ndcg_at_k, mrr, recall_at_k (k = task.k)   | ``valid_ndcg_at_k``     |
| two_tower            | loss, ndcg_at_k, mrr, recall_at_k                | ``valid_ndcg_at_k``     |

``loss``, ``log_loss`` and ``rmse`` are better lower, the others higher. ``training.select =
"last"`` keeps the last epoch (also what a run without validation data keeps);
``training.patience = N`` stops when the selected metric has not improved for N epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from deepsets.task_kinds import lower_is_better, task_traits

LAST = "last"
SCORE_KEY = "selection_score"
"""The reported metric Ray Train's checkpoint retention ranks by: the selected metric, signed so
that higher is better (NaN, e.g. the AUC of a one-class validation set, ranks lowest)."""


def validation_metrics(kind: str, k: int = 10) -> Tuple[str, ...]:
    """The validation metrics a task kind reports (without the ``valid_`` prefix).

    Raises:
        ValueError: for an unknown kind.
    """
    return task_traits(kind).validation_metrics(k)


def default_select(kind: str, k: int = 10) -> str:
    """The metric a run of this kind selects its epoch on.

    Raises:
        ValueError: for an unknown kind.
    """
    return task_traits(kind).default_select(k)


def select_problem(select: str, patience: int, kind: str, k: int, has_valid: bool) -> Optional[str]:
    """Why ``training.select`` / ``training.patience`` cannot work for this run, or None."""
    if select not in ("", LAST):
        names = [f"valid_{m}" for m in validation_metrics(kind, k)]
        if select not in names:
            return f'a {kind} run reports {", ".join(names)} (or "last"; found {select!r})'
    if not has_valid and (select not in ("", LAST) or patience > 0):
        return "selecting an epoch on a validation metric (select, patience) needs data.valid"
    if select == LAST and patience > 0:
        return 'patience needs a metric to watch: set select to a validation metric, not "last"'
    return None


@dataclass(frozen=True)
class Selection:
    """The selected metric (None: keep the last epoch) and the early-stopping patience."""

    metric: Optional[str]
    patience: int = 0

    @classmethod
    def of(cls, select: str, patience: int, kind: str, k: int, has_valid: bool) -> "Selection":
        """From the config's ``training.select`` / ``patience`` (``""`` = the kind's default
        when there is validation data, else the last epoch)."""
        if select == LAST or (not select and not has_valid):
            return cls(None, 0)
        return cls(select or default_select(kind, k), patience)

    @property
    def higher_is_better(self) -> bool:
        return self.metric is not None and not lower_is_better(self.metric)

    def score(self, metrics: Mapping[str, float]) -> float:
        """The selected metric of an epoch, signed so that higher is better; NaN or absent: -inf."""
        value = metrics.get(self.metric, math.nan) if self.metric else math.nan
        if value is None or math.isnan(value):
            return -math.inf
        return float(value) if self.higher_is_better else -float(value)
