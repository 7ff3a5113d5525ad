"""Checks across fields of a run config, one line each (``location``, ``message``).

Each check runs only when every field it reads is valid on its own, so one mistake is reported
once, where it is, and not again by every check that reads it.
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Tuple

from deepsets.fusion_heads import fusion_traits
from deepsets.pipelines.training.selection import select_problem
from deepsets.task_kinds import grouped_tasks, task_traits

# (fields that must be valid, fields passed as None when invalid, the check)
_Check = Tuple[Tuple[str, ...], Tuple[str, ...], Callable[..., Optional[Tuple[str, str]]]]


def _heads_divide_dim(heads: int, dim: int, layers: Optional[int], fusion: Optional[str]) -> Optional[Tuple[str, str]]:
    # Heads are unused only by pooling-only summarizers feeding a head without attention (a
    # whole-model baseline has no summarizers); when layers or fusion is itself invalid (None
    # here), check anyway.
    traits = None if fusion is None else fusion_traits(fusion)
    used = traits is None or traits.attention or layers is None or (layers > 0 and traits.set_head)
    if used and dim % heads:
        return "model.heads", f"must divide model.dim (heads = {heads}, dim = {dim})"
    return None


def _fusion_pooling(fusion: str, pooling: str) -> Optional[Tuple[str, str]]:
    poolings = fusion_traits(fusion).poolings
    if poolings is not None and pooling not in poolings:
        return "model.fusion_pooling", f"fusion {fusion!r} supports {', '.join(poolings)} (found {pooling!r})"
    return None


def _outputs(kind: str, n: int) -> Optional[Tuple[str, str]]:
    problem = task_traits(kind).outputs_problem(n)
    return ("task.num_outputs", problem) if problem else None


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


def _towers(
    kind: str, query: tuple, item: tuple, fusion: Optional[str], shortcuts: Optional[tuple] = None
) -> Optional[Tuple[str, str]]:
    shortcuts = shortcuts or ()
    if kind != "two_tower":
        if query or item:
            return (
                "task.query_modalities",
                f"query_modalities / item_modalities are used only by two_tower (task.kind = {kind!r})",
            )
        if shortcuts:
            return "task.shortcuts", f"shortcuts are used only by two_tower (task.kind = {kind!r})"
        return None
    if not query or not item:
        return (
            "task.query_modalities" if not query else "task.item_modalities",
            "a two_tower task needs both query_modalities and item_modalities",
        )
    if fusion is not None and not fusion_traits(fusion).set_head:
        return "model.fusion", f"two_tower towers are set-fusion models: the {fusion} baseline cannot be a tower"
    shared = sorted(set(query) & set(item))
    if shared:
        return "task.item_modalities", f"a modality belongs to one tower, found in both: {shared}"
    for pair in shortcuts:
        if pair[0] not in query or pair[1] not in item:
            return (
                "task.shortcuts",
                f"each pair is [query modality, item modality]: {list(pair)} must pair one of {list(query)} with one of {list(item)}",
            )
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


_CHECKS: List[_Check] = [
    (("task.kind", "data.label_columns", "data.group_column", "data.item_column"), (), _task_columns),
    (("task.kind", "task.query_modalities", "task.item_modalities"), ("model.fusion", "task.shortcuts"), _towers),
    (("model.heads", "model.dim"), ("model.layers", "model.fusion"), _heads_divide_dim),
    (("model.fusion", "model.fusion_pooling"), (), _fusion_pooling),
    (("task.kind", "task.num_outputs"), (), _outputs),
    (("training.batch_size", "scaling.workers"), (), _even_batches),
    (("training.select", "training.patience", "task.kind", "task.k", "data.valid"), (), _selection),
    (("task.kind", "task.negatives", "data.items"), (), _negatives),
]


def cross_problems(values: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """Checks across fields; each runs only when every field it reads is itself valid."""
    found = []
    for keys, optional, check in _CHECKS:
        if all(k in values for k in keys):
            problem = check(*(values[k] for k in keys), *(values.get(k) for k in optional))
            if problem:
                found.append(problem)
    return found


def schema_source_problem(has_path: bool, has_inline: bool) -> Optional[str]:
    if has_path and has_inline:
        return 'give either path = "schema.toml" or inline id_column / [[schema.modality]] tables, not both'
    if not has_path and not has_inline:
        return 'give either path = "schema.toml" or inline [[schema.modality]] tables'
    return None
