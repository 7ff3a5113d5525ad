"""Checks across fields of a run config, one line each (``location``, ``message``).

Each check runs only when every field it reads is valid on its own, so one mistake is reported
once, where it is, and not again by every check that reads it. The rules across the model
settings (``[model]`` and the model's part of ``[task]``) are :class:`deepsets.model_args.ModelArgs`'
own (``deepsets.model_args.MODEL_RULES``): :func:`run_problems` builds the one checked
``ModelArgs`` of a config, naming the config's fields in its messages.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from deepsets.model_args import TWO_TOWER_FIELDS, ModelArgs, ModelArgsError, model_problems
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


_FIRST: List[_Check] = [
    (("task.kind", "data.label_columns", "data.group_column", "data.item_column"), (), _task_columns),
]
_AFTER_MODEL: List[_Check] = [
    (("training.batch_size", "scaling.workers"), (), _even_batches),
    (("training.select", "training.patience", "task.kind", "task.k", "data.valid"), (), _selection),
    (("task.kind", "task.negatives", "data.items"), (), _negatives),
]

MODEL_LOCATIONS: Dict[str, str] = {
    f.name: "task.kind"
    if f.name == "task"
    else f"task.{f.name}"
    if f.name in ("num_outputs", *TWO_TOWER_FIELDS)
    else f"model.{f.name}"
    for f in fields(ModelArgs)
}
"""Where each :class:`ModelArgs` field is set in a run config: ``dim`` is ``model.dim``,
``task`` is ``task.kind``, ``num_outputs`` and the two-tower fields are in ``[task]``."""


def model_location(field: str) -> str:
    """The run config's name of the ``ModelArgs`` field ``field`` (``dim`` -> ``model.dim``)."""
    return MODEL_LOCATIONS[field]


def _checked_model_args(values: Mapping[str, Any]) -> Tuple[Optional[ModelArgs], List[Tuple[str, str]]]:
    """The model settings among ``values`` as one checked :class:`ModelArgs` (when every one is
    valid on its own), or the problems its rules find in the valid ones."""
    settings = {field: values[where] for field, where in MODEL_LOCATIONS.items() if where in values}
    if settings.get("task") != "two_tower":
        settings.pop("temperature", None)  # read by two_tower only: other models keep the default
    if any(where not in values for field, where in MODEL_LOCATIONS.items() if field != "temperature"):
        return None, model_problems(settings, model_location)
    try:
        return ModelArgs(**settings, names=model_location), []
    except ModelArgsError as err:
        return None, err.problems


def _run(checks: List[_Check], values: Mapping[str, Any]) -> List[Tuple[str, str]]:
    found = []
    for keys, optional, check in checks:
        if all(k in values for k in keys):
            problem = check(*(values[k] for k in keys), *(values.get(k) for k in optional))
            if problem:
                found.append(problem)
    return found


def run_problems(values: Mapping[str, Any]) -> Tuple[Optional[ModelArgs], List[Tuple[str, str]]]:
    """Every check across the fields of a run config, each run once and only when every field it
    reads is itself valid.

    Args:
        values: ``"section.field" -> value`` for the fields that are valid on their own.

    Returns:
        ``(model settings, problems)``: the checked :class:`ModelArgs` the model is built from
        (None when any problem was found or a model field is invalid), and every problem as
        ``(location, message)``.
    """
    model_args, model_found = _checked_model_args(values)
    found = _run(_FIRST, values) + model_found + _run(_AFTER_MODEL, values)
    return (model_args if not found else None), found


def schema_source_problem(has_path: bool, has_inline: bool) -> Optional[str]:
    if has_path and has_inline:
        return 'give either path = "schema.toml" or inline id_column / [[schema.modality]] tables, not both'
    if not has_path and not has_inline:
        return 'give either path = "schema.toml" or inline [[schema.modality]] tables'
    return None
