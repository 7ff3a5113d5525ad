"""Checks across fields of a run config, one line each (``location``, ``message``).

Each check runs only when every field it reads is valid on its own, so one mistake is reported
once, where it is, and not again by every check that reads it. The model settings
(``[model]`` and the model's part of ``[task]``) are one :class:`deepsets.model_args.ModelArgs`
(:data:`MODEL_LOCATIONS` says where each is written); its rules across fields
(``deepsets.model_args.MODEL_RULES``) run here, once, naming the config's fields in their
messages.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from deepsets.model_args import TWO_TOWER_FIELDS, ModelArgs, model_problems
from deepsets.pipelines.training.selection import select_problem
from deepsets.task_kinds import grouped_tasks, task_traits

# (fields that must be valid, fields passed as None when invalid, the check)
_Check = Tuple[Tuple[str, ...], Tuple[str, ...], Callable[..., Optional[Tuple[str, str]]]]


def _even_batches(batch_size: int, workers: int) -> Optional[Tuple[str, str]]:
    if batch_size % workers:
        return (
            "training.batch_size",
            f"must be divisible by scaling.workers (batch_size = {batch_size}, workers = {workers}; "
            "the global batch is split evenly across workers)",
        )
    return None


def _task_columns(kind: str, labels: tuple, group: Optional[str], item: Optional[str]) -> Optional[Tuple[str, str]]:
    traits = task_traits(kind)
    if traits.labels and not labels:
        return "data.label_columns", f"a {kind} task needs at least one label column"
    if not traits.labels and labels:
        return (
            "data.label_columns",
            f"a {kind} task learns from (query, item) rows and reads no labels (found {list(labels)})",
        )
    if traits.grouped and len(labels) != 1:
        return "data.label_columns", f"a {kind} task ranks by one relevance column (found {list(labels)})"
    if traits.grouped and not group:
        return (
            "data.group_column",
            f'a {kind} task ranks rows within query groups: name the integer query id column (e.g. group_column = "query_id")',
        )
    if not traits.grouped and group:
        return "data.group_column", f"is used only by {' / '.join(grouped_tasks())} tasks (task.kind = {kind!r})"
    if kind == "two_tower" and not item:
        return (
            "data.item_column",
            "a two_tower task needs the integer item id column (in-batch duplicates, popularity, validation corpus)",
        )
    if kind != "two_tower" and item:
        return "data.item_column", f"is used only by two_tower tasks (task.kind = {kind!r})"
    return None


def _selection(select: str, patience: int, kind: str, k: int, valid: Optional[tuple]) -> Optional[Tuple[str, str]]:
    problem = select_problem(select, patience, kind, k, bool(valid))
    return (
        ("training.select" if select not in ("", "last") or not patience else "training.patience", problem)
        if problem
        else None
    )


def _negatives(kind: str, negatives: str, items: Optional[tuple]) -> Optional[Tuple[str, str]]:
    if negatives != "in_batch" and kind != "two_tower":
        return "task.negatives", f"is used only by two_tower tasks (task.kind = {kind!r})"
    if negatives != "in_batch" and not items:
        return (
            "data.items",
            f"{negatives} negatives come from the item table: give data.items (one row per item: item modalities and the item column)",
        )
    if items and negatives == "in_batch":
        return "data.items", "the item table is used only by mixed or catalogue negatives (task.negatives)"
    return None


def _in_process_workers(trainer: str, workers: int) -> Optional[Tuple[str, str]]:
    if trainer == "in_process" and workers != 1:
        return (
            "scaling.trainer",
            f"in_process trains one worker in the calling process (scaling.workers = {workers}): "
            'use "ray_train" or "auto" for several workers',
        )
    return None


_FIRST: List[_Check] = [
    (("task.kind", "data.label_columns", "data.group_column", "data.item_column"), (), _task_columns),
]
_AFTER_MODEL: List[_Check] = [
    (("training.batch_size", "scaling.workers"), (), _even_batches),
    (("scaling.trainer", "scaling.workers"), (), _in_process_workers),
    (("training.select", "training.patience", "task.kind", "task.k", "data.valid"), (), _selection),
    (("task.kind", "task.negatives", "data.items"), (), _negatives),
]

MODEL_LOCATIONS: Dict[str, str] = {
    name: "task.kind"
    if name == "task"
    else f"task.{name}"
    if name in ("num_outputs", *TWO_TOWER_FIELDS)
    else f"model.{name}"
    for name in ModelArgs.model_fields
}
"""Where each :class:`ModelArgs` field is set in a run config: ``dim`` is ``model.dim``,
``task`` is ``task.kind``, ``num_outputs`` and the two-tower fields are in ``[task]``."""

FIELD_AT: Dict[str, str] = {where: field for field, where in MODEL_LOCATIONS.items()}
"""``"task.kind" -> "task"``: the :class:`ModelArgs` field set at each location."""


def model_location(field: str) -> str:
    """The run config's name of the ``ModelArgs`` field ``field`` (``dim`` -> ``model.dim``)."""
    return MODEL_LOCATIONS[field]


def _model_rules(values: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """The model rules' problems among ``values`` (the fields valid on their own)."""
    settings = {field: values[where] for field, where in MODEL_LOCATIONS.items() if where in values}
    if settings.get("task") != "two_tower":
        settings.pop("temperature", None)  # read by two_tower only
    return model_problems(settings, model_location)


def _run(checks: List[_Check], values: Mapping[str, Any]) -> List[Tuple[str, str]]:
    found = []
    for keys, optional, check in checks:
        if all(k in values for k in keys):
            problem = check(*(values[k] for k in keys), *(values.get(k) for k in optional))
            if problem:
                found.append(problem)
    return found


def run_problems(values: Mapping[str, Any], model_rules: bool = True) -> List[Tuple[str, str]]:
    """Every check across the fields of a run config, each run once and only when every field it
    reads is itself valid.

    Args:
        values: ``"section.field" -> value`` for the fields that are valid on their own.
        model_rules: run :data:`deepsets.model_args.MODEL_RULES` too (False where the settings
            are a ``ModelArgs`` that ran them when it was made).

    Returns:
        Every problem as ``(location, message)``.
    """
    return _run(_FIRST, values) + (_model_rules(values) if model_rules else []) + _run(_AFTER_MODEL, values)


def schema_source_problem(has_path: bool, has_inline: bool) -> Optional[str]:
    if has_path and has_inline:
        return 'give either path = "schema.toml" or inline id_column / [[schema.modality]] tables, not both'
    if not has_path and not has_inline:
        return 'give either path = "schema.toml" or inline [[schema.modality]] tables'
    return None
