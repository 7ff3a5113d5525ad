"""``deepsets init``: a table's Parquet files to a feature schema and a run config, in one pass."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import List, Optional, Sequence

from deepsets.features import storage
from deepsets.features.errors import DataError
from deepsets.features.files import resolve_inputs
from deepsets.features.schema import parse_schema
from deepsets.pipelines.config import parse_run_config
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.init.config import InitConfig
from deepsets.pipelines.init.leaks import guess_task, name_leak, value_leak
from deepsets.pipelines.init.profile import TableProfile, profile_table, unseen_in_valid
from deepsets.pipelines.init.rules import Choice, choose_kind, id_candidates, type_name
from deepsets.pipelines.init.writing import RunDefaults, run_toml, schema_toml

UNSEEN_SHARE = 0.5  # a feature whose validation rows mostly hold values training never had is left out
FILES = ("schema.toml", "run.toml")


def _missing_column(table: TableProfile, column: str, option: str) -> DataError:
    return DataError(
        f"{option} column missing (file has: {', '.join(table.columns)})", file=table.files[0], column=column
    )


def infer_choices(table: TableProfile, label: str, id_column: Optional[str] = None) -> List[Choice]:
    """One :class:`Choice` per column of ``table``, in the table's order.

    Raises:
        DataError: for a missing label or id column, an id column that is not int or string,
            or a list of vectors of different lengths.
    """
    for column, option in ((label, "--label"), (id_column, "--id")):
        if column is not None and column not in table.columns:
            raise _missing_column(table, column, option)
    if id_column is not None and table.columns[id_column].shape != "ids":
        raise DataError(
            f"--id names a column of {table.columns[id_column].arrow_type}: row ids are ints or strings",
            file=table.files[0],
            column=id_column,
        )
    unique = [c for c in id_candidates(table) if c != label]
    chosen_id = id_column or (unique[0] if unique else None)
    choices = []
    for column, p in table.columns.items():
        t = type_name(p.arrow_type)
        if column == label:
            choices.append(Choice(column, t, "label", "the label"))
        elif column == chosen_id:
            why = "named by --id" if id_column else f"unique in all {p.rows:,} rows: the row id"
            choices.append(Choice(column, t, "id", f"{why}, not a feature"))
        elif column in unique:
            choices.append(
                Choice(column, t, "left_out", f"unique in every row: another identifier (the id column is {chosen_id})")
            )
        elif (leak := name_leak(column, label) or value_leak(column, label, table.sample)) is not None:
            choices.append(Choice(column, t, "left_out", f"leaks the label: {leak}"))
        else:
            choices.append(choose_kind(p))
    return choices


def flag_unseen(choices: List[Choice], valid_files: Sequence[str], table: TableProfile, progress: bool) -> None:
    """Deal with the scalar features whose validation values training mostly never saw: a
    categorical one is left out (kept, commented out, in the schema: every such value would be
    out of vocabulary); a numeric one (a time split's year) stays, ``quantile``-encoded, which
    holds a value beyond training's range at the nearest end of it, as a tree's split does."""
    checked = {c.column: c.kind for c in choices if c.role == "feature" and c.kind in ("categorical", "numeric")}
    for column, found in unseen_in_valid(valid_files, table, checked, progress).items():
        if not (found.present and found.share > UNSEEN_SHARE):
            continue
        c = next(c for c in choices if c.column == column)
        if c.kind == "numeric":
            c.settings = [("encoding", "quantile", "")]
            c.reason += (
                f"; {found.share:.0%} of validation rows lie outside training's range (a time split's year?): "
                "quantile-encoded, so they count as training's nearest end"
            )
            continue
        c.role = "left_out"
        c.reason = (
            f"{found.share:.0%} of validation rows hold values never seen in training (a time split's date or month?): "
            f"it cannot generalize to new rows (left out; {c.kind} in the schema, commented out)"
        )


def _relative(paths: Sequence[str], out: str) -> List[str]:
    return [p if storage.is_uri(p) else os.path.relpath(os.path.abspath(p), os.path.abspath(out)) for p in paths]


def run_init(cfg: InitConfig, *, progress: bool = False) -> dict:
    """Profile the training table (and the validation one), choose a kind for every column and
    write ``schema.toml`` and ``run.toml`` into ``cfg.out`` (created if needed).

    Args:
        cfg: the checked options: the training (and validation) Parquet, the label and id
            columns, the output folder and whether files already there may be replaced.
        progress: progress bars on large inputs.

    Returns:
        the summary: files written, rows, task, and every column's choice (``columns`` as
        plain values, ``choices`` as :class:`Choice` objects).

    Raises:
        JobError: when a file is in the way (without ``overwrite``) or no column is left to learn from.
        DataError: for inputs that cannot be read or a column that no kind can take as it is.
    """
    inputs, label, valid, id_column, out = cfg.inputs, cfg.label, cfg.valid, cfg.id_column, cfg.out
    targets = [os.path.join(out, name) for name in FILES]
    taken = [t for t in targets if os.path.exists(t)]
    if taken and not cfg.overwrite:
        raise JobError(f"{', '.join(taken)} already exist(s): pass --overwrite to replace, or choose another --out")
    files = resolve_inputs(list(inputs))
    table = profile_table(files, label=label, progress=progress)
    choices = infer_choices(table, label, id_column)
    task, outputs, task_reason = guess_task(table, label)
    if valid:
        flag_unseen(choices, resolve_inputs(list(valid)), table, progress)
    if not any(c.role == "feature" for c in choices):
        raise JobError(
            f"no column of {files[0]} is left to learn from: " + "; ".join(f"{c.column}: {c.reason}" for c in choices)
        )
    source = ", ".join(inputs)
    schema_text = schema_toml(choices, source, table.rows)
    defaults = RunDefaults(
        train=_relative(inputs, out),
        valid=_relative(valid, out) if valid else None,
        label=label,
        task=task,
        num_outputs=outputs,
        task_reason=task_reason,
        rows=table.rows,
    )
    run_text = run_toml(defaults)
    parse_schema(tomllib.loads(schema_text), targets[0])  # what init writes must read back as it is
    parse_run_config(tomllib.loads(run_text), targets[1], base_dir=out)
    Path(out).mkdir(parents=True, exist_ok=True)
    for target, text in zip(targets, (schema_text, run_text)):
        Path(target).write_text(text, encoding="utf-8")
    return {
        "schema": targets[0],
        "run_config": targets[1],
        "rows": table.rows,
        "files": len(files),
        "task": {"kind": task, "num_outputs": outputs, "reason": task_reason},
        "columns": [
            {
                "column": c.column,
                "arrow_type": c.arrow_type,
                "role": c.role,
                "kind": c.kind,
                "settings": {k: v for k, v, _ in c.settings},
                "reason": c.reason,
                "warning": c.warning,
            }
            for c in choices
        ],
        "choices": choices,  # the same as Choice objects, for the printed table
    }
