"""The table of task kinds: what each kind learns from, validates on and is ablated with (torch-free).

    >>> task_traits("binary").select
    'auc'
    >>> task_traits("listwise").validation_metrics(k=5)
    ('loss', 'ndcg_at_5', 'mrr', 'recall_at_5')

Everything that depends on the task kind reads this table: the run config validates
``task.kind`` against :func:`task_names` and checks ``num_outputs``, label and group columns
with it; the training recipe reports :meth:`TaskTraits.validation_metrics` and selects its epoch
on ``select``; ``deepsets ablate`` scores with ``ablation_metric`` and allows ``--per-row`` where
``per_row`` says so. The torch side (loss, metric accumulator, ablation metric) is registered
beside the traits in one call::

    register_task(TaskTraits("poisson", metrics=("loss", "deviance"), select="deviance",
                             lower_is_better=("loss", "deviance"), ablation_metric="neg_deviance"),
                  loss=poisson_loss, metrics=PoissonMetrics, ablation=neg_deviance)   # deepsets.tasks

Other processes (Ray workers, served models) know a kind when its module is named under the
entry-point group ``deepsets.plugins`` by an installed package (:mod:`deepsets.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from deepsets.registry import Registry

_RANKING_METRICS = ("loss", "ndcg_at_{k}", "mrr", "recall_at_{k}")


@dataclass(frozen=True)
class TaskTraits:
    """One task kind, declared once.

    Attributes:
        name: the kind's name, as written in a config (``task.kind = "binary"``).
        metrics: the validation metrics it reports (without the ``valid_`` prefix), ``loss``
            first; ``{k}`` stands for the ranking cutoff ``task.k``.
        select: the metric a run selects its epoch on by default (one of ``metrics``).
        lower_is_better: the metrics that are better lower (the others are better higher).
        ablation_metric: the name of the metric ``deepsets ablate`` scores subsets with (higher
            is better); None for kinds ablated by their ranking metrics (listwise, pairwise,
            two_tower) instead.
        per_row: ``deepsets ablate --per-row`` gives each row's Shapley values for it.
        grouped: its loss and metrics work within query groups (``data.group_column``).
        labels: it learns from label columns (two_tower learns from (query, item) rows).
        head: a linear task head on the fused embedding gives its outputs (two_tower has
            two towers instead).
        min_outputs: the fewest ``num_outputs`` it can have.
        max_outputs: the most ``num_outputs`` it can have (None: no limit).
        outputs_are: what its outputs are, in messages ("classes", "labels", "targets").

    Raises:
        ValueError: when ``metrics`` does not start with loss, ``select`` or
            ``lower_is_better`` name metrics it does not report, or the output range is empty.
    """

    name: str
    metrics: Tuple[str, ...]
    select: str
    lower_is_better: Tuple[str, ...] = ("loss",)
    ablation_metric: Optional[str] = None
    per_row: bool = False
    grouped: bool = False
    labels: bool = True
    head: bool = True
    min_outputs: int = 1
    max_outputs: Optional[int] = None
    outputs_are: str = "outputs"

    def __post_init__(self) -> None:
        problems = []
        if not self.name or not isinstance(self.name, str):
            problems.append("a task kind needs a name")
        if not self.metrics or self.metrics[0] != "loss":
            problems.append(f"metrics must start with 'loss' (found {self.metrics})")
        if self.select not in self.metrics:
            problems.append(f"select must be one of its metrics {self.metrics} (found {self.select!r})")
        stray = [m for m in self.lower_is_better if m not in self.metrics]
        if stray:
            problems.append(f"lower_is_better names metrics it does not report: {stray}")
        if self.min_outputs < 1 or (self.max_outputs is not None and self.max_outputs < self.min_outputs):
            problems.append(f"outputs must be a range >= 1 (found {self.min_outputs}..{self.max_outputs})")
        if problems:
            raise ValueError(f"task kind {self.name!r}: " + "; ".join(problems))

    def validation_metrics(self, k: int = 10) -> Tuple[str, ...]:
        """The metrics it reports, with the ranking cutoff ``k`` filled in."""
        return tuple(m.format(k=k) for m in self.metrics)

    def default_select(self, k: int = 10) -> str:
        """The metric a run selects its epoch on, with its ``valid_`` prefix."""
        return "valid_" + self.select.format(k=k)

    def outputs_problem(self, num_outputs: int) -> Optional[str]:
        """Why ``num_outputs`` does not fit this kind, or None."""
        if self.max_outputs == self.min_outputs and num_outputs != self.min_outputs:
            return f"a {self.name} task has exactly {self.min_outputs} output{'s' if self.min_outputs > 1 else ''} (found {num_outputs})"
        if num_outputs < self.min_outputs:
            return f"a {self.name} task needs at least {self.min_outputs} {self.outputs_are} (found {num_outputs})"
        if self.max_outputs is not None and num_outputs > self.max_outputs:
            return f"a {self.name} task has at most {self.max_outputs} {self.outputs_are} (found {num_outputs})"
        return None


_BUILT_IN = (
    TaskTraits(
        "binary",
        ("loss", "auc", "log_loss"),
        "auc",
        ("loss", "log_loss"),
        "roc_auc",
        per_row=True,
        max_outputs=1,
    ),
    TaskTraits(
        "multilabel",
        ("loss", "f1_micro", "f1_macro", "map"),
        "map",
        ablation_metric="macro_roc_auc",
        min_outputs=2,  # one label is a binary task (and its metrics need two or more)
        outputs_are="labels",
    ),
    TaskTraits(
        "multiclass",
        ("loss", "accuracy"),
        "accuracy",
        ablation_metric="accuracy",
        min_outputs=2,
        outputs_are="classes",
    ),
    TaskTraits(
        "regression",
        ("loss", "rmse"),
        "rmse",
        ("loss", "rmse"),
        "neg_rmse",
        per_row=True,
        outputs_are="targets",
    ),
    TaskTraits("listwise", _RANKING_METRICS, "ndcg_at_{k}", per_row=True, grouped=True, max_outputs=1),
    TaskTraits("pairwise", _RANKING_METRICS, "ndcg_at_{k}", per_row=True, grouped=True, max_outputs=1),
    TaskTraits("two_tower", _RANKING_METRICS, "ndcg_at_{k}", per_row=True, labels=False, head=False),
)
_TASKS: Registry[TaskTraits] = Registry("task kind", "kinds", ((t.name, t) for t in _BUILT_IN))


def register_task_traits(traits: TaskTraits) -> None:
    """Add a kind's traits to the table (the same traits again is a no-op). The model side
    registers its loss and metrics too: ``deepsets.tasks.register_task(traits, ...)``.

    Raises:
        ValueError: when another kind of that name is registered with different traits.
    """
    _TASKS.register(traits.name, traits, kind_of_value="traits")


def task_traits(name: str) -> TaskTraits:
    """The traits of the task kind ``name``.

    Raises:
        ValueError: for a kind nobody registered (nor any installed plug-in), listing the known ones.
    """
    return _TASKS.get(name)


def task_names() -> Tuple[str, ...]:
    """Every registered kind, in registration order (the choices of ``task.kind``)."""
    return _TASKS.names()


def grouped_tasks() -> Tuple[str, ...]:
    """The kinds whose loss and metrics work within query groups (listwise, pairwise, ...)."""
    return tuple(name for name, traits in _TASKS.items() if traits.grouped)


def lower_is_better(metric: str) -> bool:
    """Whether a validation metric (with or without its ``valid_`` prefix) is better lower, for
    any registered kind that reports it."""
    name = metric.removeprefix("valid_")
    return any(name in t.lower_is_better for _, t in _TASKS.items())
