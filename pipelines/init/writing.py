"""The files ``deepsets init`` writes (``schema.toml``, ``run.toml``), each choice explained by a
comment beside it, and the table it prints."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from deepsets.pipelines.config.toml_text import toml_value
from deepsets.pipelines.init.rules import Choice

NUMERIC_NAME = "numbers"
ENCODING_NOTE = "each column: log1p when non-negative and right-skewed, else standardized (deepsets fit prints which)"


@dataclass
class RunDefaults:
    """What ``run.toml`` says besides the schema: data paths (relative to the file), label, task."""

    train: List[str]
    valid: Optional[List[str]]
    label: str
    task: str
    num_outputs: int
    task_reason: str
    rows: int


def modality_name(column: str, taken: set) -> str:
    """A modality name (an identifier) for ``column``, unique among ``taken``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", column)
    if not re.match(r"[A-Za-z_]", name):
        name = "c_" + name
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _comment(text: str) -> str:
    return "# " + text


def _table(lines: List[str], name: str, kind: str, column: Optional[str], settings, prefix: str = "") -> None:
    rows = [("name", name, ""), ("kind", kind, "")]
    if column is not None and column != name:
        rows.append(("column", column, "the Parquet column"))
    rows.extend(settings)
    lines.append(prefix + "[[modality]]")
    for key, value, why in rows:
        text = f"{key} = {toml_value(value)}"
        lines.append(prefix + (f"{text:<28} # {why}" if why else text))


def schema_toml(choices: Sequence[Choice], source: str, rows: int) -> str:
    """``schema.toml``: the id column, one table per modality and the left-out columns, each
    with the reason for it."""
    lines = [
        _comment(f"Feature schema written by `deepsets init` from {source} ({rows:,} rows); each choice is explained"),
        _comment("beside it. Edit freely: `deepsets fit --schema schema.toml --input ...` checks it against the data."),
        _comment("The kinds and their fields: docs/schema.md."),
        "",
    ]
    ids = [c for c in choices if c.role == "id"]
    if ids:
        lines.append(f"{'id_column = ' + toml_value(ids[0].column):<28} # {ids[0].reason}")
        lines.append("")
    taken: set = set()
    numeric = [c for c in choices if c.role == "feature" and c.kind == "numeric"]
    for c in choices:
        if c.role != "feature" or c.kind == "numeric":
            continue
        lines.append(_comment(f"{c.column} ({c.arrow_type}): {c.reason}"))
        lines.extend([_comment(f"WARNING: {c.warning}")] if c.warning else [])
        _table(lines, modality_name(c.column, taken), c.kind, c.column, c.settings)
        lines.append("")
    if numeric:
        lines.append(_comment("The number columns, one numeric modality:"))
        for c in numeric:
            lines.append(
                _comment(
                    f"  {c.column} ({c.arrow_type}): {c.reason}" + (f"; WARNING: {c.warning}" if c.warning else "")
                )
            )
        overrides = {c.column: value for c in numeric for key, value, _ in c.settings if key == "encoding"}
        settings = [("columns", [c.column for c in numeric], ""), ("encoding", "auto", ENCODING_NOTE)]
        if overrides:
            settings.append(
                ("encodings", overrides, "validation lies beyond training's range: held at its nearest end")
            )
        _table(lines, modality_name(NUMERIC_NAME, taken), "numeric", None, settings)
        lines.append("")
    left = [c for c in choices if c.role in ("label", "left_out")]
    if left:
        lines.append(_comment("Not features:"))
        lines.extend(_comment(f"  {c.column} ({c.arrow_type}): {c.reason}") for c in left)
    for c in left:
        if c.kind:
            lines += ["", _comment(f"{c.column}, left out above; to use it anyway, uncomment:")]
            column = None if c.kind == "numeric" else c.column
            _table(lines, modality_name(c.column, taken), c.kind, column, c.settings, prefix="# ")
    return "\n".join(lines) + "\n"


def batch_size_for(rows: int) -> int:
    """rows / 20 rounded down to a power of two, within 32..512: about 20 steps an epoch on small
    tables, the default 512 on large ones."""
    size = 32
    while size * 2 <= min(512, rows // 20):
        size *= 2
    return size


TARGET_STEPS = 800
"""Optimizer steps ``init`` plans for: enough for the tables of ``benchmarks/tables`` to pass
their best validation epoch, which ``patience`` then stops shortly after."""
MIN_EPOCHS, MAX_EPOCHS, PATIENCE = 3, 20, 2


def epochs_for(rows: int, batch: int) -> int:
    """About :data:`TARGET_STEPS` steps: ``ceil(TARGET_STEPS / steps per epoch)`` within
    :data:`MIN_EPOCHS`..:data:`MAX_EPOCHS`."""
    steps = max(1, rows // batch)
    return max(MIN_EPOCHS, min(MAX_EPOCHS, -(-TARGET_STEPS // steps)))


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def run_toml(d: RunDefaults) -> str:
    """``run.toml``: data, label, schema and task from the table, sensible defaults for the rest."""
    batch = batch_size_for(d.rows)
    epochs = epochs_for(d.rows, batch)
    cores = available_cores()
    lines = [
        _comment("Run config written by `deepsets init`: paths are relative to this file; every field and its"),
        _comment("default is in docs/training.md. Train with: deepsets train --config run.toml"),
        "",
        "[data]",
        f"{'train = ' + toml_value(d.train):<40} # the --input of deepsets init",
    ]
    if d.valid:
        lines.append(f"{'valid = ' + toml_value(d.valid):<40} # scored every epoch; the best epoch is the model")
    lines += [
        f"{'label_columns = ' + toml_value([d.label]):<40} # the label (not a feature)",
        "",
        "[schema]",
        f"{'path = ' + toml_value('schema.toml'):<40} # written beside this file by deepsets init",
        "",
        "[model]",
        f"{'dim = 64':<40} # shared width of the modality vectors (the default, 128, for larger tables)",
        f"{'fusion = ' + toml_value('transformer'):<40} # deepset | attention | transformer | concat | tmm_deepset | mmt",
        f"{'modality_dropout = 0.1':<40} # drop whole modalities while training: missing ones are the norm",
        "",
        "[task]",
        _comment(d.task_reason),
        f"kind = {toml_value(d.task)}",
        f"num_outputs = {d.num_outputs}",
        "",
        "[training]",
        f"{'epochs = ' + str(epochs):<40} # about {TARGET_STEPS} steps of {d.rows // batch:,} per epoch, within {MIN_EPOCHS}..{MAX_EPOCHS}",
        f"{'batch_size = ' + str(batch):<40} # {d.rows:,} rows / 20 as a power of two in 32..512",
        "lr = 0.001",
    ]
    if d.valid:
        lines.append(
            f"{'patience = ' + str(PATIENCE):<40} # stop after {PATIENCE} epochs without a better validation score; the best epoch is kept"
        )
    lines += [
        "",
        "[scaling]",
        f"{'workers = 1':<40} # trained in this process, no Ray start-up; 2 or more: Ray Train, the batch split between them",
        f"{'cpus_per_worker = ' + str(cores):<40} # torch threads: the cores this machine gives this process",
        "",
        "[tracking]",
        f'{"run_name = " + toml_value(""):<40} # "" = a generated name; name the run to --resume it later',
    ]
    return "\n".join(lines) + "\n"


def format_choices(choices: Sequence[Choice]) -> str:
    """The printed table: column, Arrow type, kind (or role), key settings, reason."""
    head = ("column", "arrow type", "kind", "settings", "reason")
    rows = [
        (
            c.column,
            c.arrow_type,
            c.kind if c.role == "feature" else c.role.replace("_", " "),
            c.settings_text() if c.role == "feature" else "",
            c.reason,
        )
        for c in choices
    ]
    widths = [min(32, max(len(r[i]) for r in [head, *rows])) for i in range(4)]
    lines = []
    for r in [head, *rows]:
        lines.append("  ".join(f"{v:<{w}}" for v, w in zip(r[:4], widths)) + "  " + r[4])
    return "\n".join(lines)
