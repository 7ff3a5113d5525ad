"""What the driver checks and reads from the training data before any Ray worker starts."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

import numpy as np

from deepsets.builders import check_table_sizes
from deepsets.features import storage
from deepsets.features.errors import DataError
from deepsets.features.files import check_columns, open_parquet, resolve_inputs
from deepsets.features.labels import key_tensor, label_tensor
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.config import RunConfig
from deepsets.pipelines.errors import ConfigError


def check_data_paths(cfg: RunConfig) -> None:
    """Every path of ``data.train``, ``data.valid``, ``data.items`` and ``data.spec`` exists,
    before anything is fitted or started.

    Raises:
        DataError: naming each bad path with the config key it came from.
    """
    problems = []
    for key in ("train", "valid", "items"):
        paths = getattr(cfg.data, key)
        if paths:
            try:
                resolve_inputs(list(paths))
            except DataError as err:
                problems.append(f"data.{key}: {err}")
    if cfg.data.spec and not storage.is_file(cfg.data.spec):
        problems.append(f"data.spec: no spec file at '{cfg.data.spec}'")
    if problems:
        raise DataError("; ".join(problems))


def check_training_data(cfg: RunConfig, spec: FeatureSpec) -> int:
    """Before any worker starts: every train/valid file has the modality, label and key
    columns, two_tower towers name modalities of the spec, and there is at least one global
    batch of training rows. A file with no rows among files with rows holds nothing to read
    or check: a note on stderr says it is skipped. Returns the training row count.

    Raises:
        DataError: naming the file and column, or the row count; naming the files when every
            file of data.train or data.valid is empty.
        ConfigError: for a tower naming a modality the schema does not have.
        ValueError: for an embedding table too big to build.
    """
    check_table_sizes(spec.model_inputs(), cfg.model.dim)  # a table too big to build: refused before Ray starts
    labels = list(cfg.data.label_columns) + [c for c in (cfg.data.group_column, cfg.data.item_column) if c]
    for side in ("query", "item"):
        unknown = sorted(set(getattr(cfg.model, f"{side}_modalities")) - set(spec.names))
        if unknown:
            raise ConfigError(
                "run config",
                [f"task.{side}_modalities: names {unknown}, not modalities of the schema ({', '.join(spec.names)})"],
            )
    rows = 0
    for key, paths, count in (("data.train", cfg.data.train, True), ("data.valid", cfg.data.valid, False)):
        if not paths:
            continue
        groups = GroupRuns(cfg.data.group_column) if count and cfg.data.group_column else None
        files, empty = resolve_inputs(list(paths)), []
        for path in files:
            pf = open_parquet(path)
            check_columns(path, pf.schema_arrow, spec.schema.modality, labels)
            if pf.metadata.num_rows == 0:
                empty.append(path)
                continue
            if cfg.data.group_column:
                group_ids = read_key_column(path, pf, cfg.data.group_column)
                if groups is not None:
                    groups.check(path, group_ids)
            if cfg.data.item_column:
                read_key_column(path, pf, cfg.data.item_column)  # integers, no nulls
            rows += pf.metadata.num_rows if count else 0
            check_label_values(cfg.model.task, cfg.model.num_outputs, cfg.data.label_columns, path, pf)
        if groups is not None:
            groups.finish()
        skip_empty_files(key, files, empty)
    if cfg.data.items:
        items = spec.subset(list(cfg.model.item_modalities))
        for path in resolve_inputs(list(cfg.data.items)):
            read_key_column(
                path, items.open_checked(path, [cfg.data.item_column]), cfg.data.item_column
            )  # integers, no nulls
    if rows < cfg.training.batch_size:
        raise DataError(
            f"only {rows} training rows: fewer than one global batch (training.batch_size = {cfg.training.batch_size})"
        )
    return rows


def skip_empty_files(key: str, files: Sequence[str], empty: Sequence[str]) -> None:
    """A note on stderr for each file of ``files`` that has no rows (the readers skip them).

    Raises:
        DataError: when every file is empty, naming them.
    """
    if empty and len(empty) == len(files):
        what, other_way = ("validation", ", or leave data.valid out") if key == "data.valid" else ("training", "")
        hint = f"give {what} files with rows{other_way}"
        if len(empty) == 1:
            raise DataError(f"{key} has no rows (its only file is empty); {hint}", file=empty[0])
        shown = ", ".join(empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
        raise DataError(f"{key} has no rows (every file is empty: {shown}); {hint}")
    for path in empty:
        print(f"note: {key}: {path} has no rows; skipped", file=sys.stderr)


def read_key_column(path: str, parquet, column: str) -> np.ndarray:
    """An integer key column (query group, item id) of one file as int64 ``(N,)``.

    Raises:
        DataError: naming the file, column and rows of a null id or a non-integer type.
    """
    try:
        return key_tensor(parquet.read(columns=[column]).column(column), column).numpy()
    except DataError as err:
        raise err.located(path, 0) from None


class GroupRuns:
    """Checks that each query group's training rows lie next to each other (in one file, or
    running on from the end of one file to the start of the next): training reads whole groups
    from contiguous rows, so a group stored in two places would train as two shorter lists.
    :meth:`check` each file in turn, then :meth:`finish`.

    Args:
        column: the group column.
    """

    def __init__(self, column: str) -> None:
        self.column = column
        self.paths: list = []
        self.groups: list = []  # per file: its distinct group ids
        self.last = None  # the previous file's last group id

    def hint(self) -> str:
        return (
            f"store each group's rows next to each other (sort the whole training set by {self.column!r}, across files)"
        )

    def check(self, path: str, ids: np.ndarray) -> None:
        """Add one file's group ids ``(N,)`` in row order.

        Raises:
            DataError: naming the file, column and rows of a group whose rows are not together.
        """
        starts = np.flatnonzero(np.diff(ids, prepend=ids[:1] - 1))  # (R,) first row of each run of one group
        run_ids = ids[starts]  # (R,)
        unique, counts = np.unique(run_ids, return_counts=True)
        if (counts > 1).any():
            group = unique[counts > 1][0]
            runs = np.flatnonzero(run_ids == group)[:3]
            ends = np.append(starts[1:], ids.size)
            where = ", ".join(f"{starts[r]}-{ends[r] - 1}" for r in runs)
            raise DataError(
                f"{int((counts > 1).sum())} query group(s) are split into separate runs of rows, e.g. group {int(group)} "
                f"at rows {where}; {self.hint()}",
                file=path,
                column=self.column,
            )
        if self.last is not None and ids.size and ids[0] == self.last:
            unique = unique[unique != self.last]  # the previous file's last group goes on here: still together
        self.last = ids[-1] if ids.size else self.last
        self.paths.append(path)
        self.groups.append(unique)

    def finish(self) -> None:
        """Raises:
        DataError: for a group that two files hold (other than one running on from the end
            of a file to the start of the next), naming both.
        """
        if len(self.groups) < 2:
            return
        ids = np.concatenate(self.groups)  # (G,)
        files = np.repeat(np.arange(len(self.groups)), [g.size for g in self.groups])  # (G,)
        order = np.argsort(ids, kind="stable")
        ids, files = ids[order], files[order]
        twice = np.flatnonzero(ids[1:] == ids[:-1])
        if twice.size:
            at = twice[0]
            raise DataError(
                f"{twice.size} query group(s) are in more than one file, e.g. group {int(ids[at])}, also in "
                f"{self.paths[files[at]]}; {self.hint()}",
                file=self.paths[files[at + 1]],
                column=self.column,
            )


def check_label_values(kind: str, width: Optional[int], label_columns: Sequence[str], path: str, parquet) -> None:
    """The label columns hold what a task of ``kind`` with ``width`` outputs learns from (or, in
    an ablation, is scored on): 0/1 for binary and multilabel (lists of ``width`` for multilabel
    with one column), class ids ``0 .. width - 1`` for multiclass, finite numbers otherwise; no
    nulls. ``width`` None: unknown, so widths and class ids beyond 0 are not checked. Reads only
    the label columns.

    Raises:
        DataError: naming the file, column and rows that hold something else.
    """
    if parquet.metadata.num_rows == 0:
        return  # no values to check
    for column in label_columns:
        try:
            values = label_tensor(parquet.read(columns=[column]).column(column), column).numpy()
        except DataError as err:
            raise err.located(path, 0) from None
        per_row = values.reshape(values.shape[0], -1)  # (N, K)
        if kind in ("binary", "multilabel"):
            bad, expected = ~np.isin(per_row, (0.0, 1.0)).all(axis=1), "0 or 1 (a click, a label present)"
        elif kind == "multiclass":
            bad = ~((per_row == np.round(per_row)) & (per_row >= 0) & (per_row < (width or np.inf))).all(axis=1)
            expected = (
                f"a class id in 0..{width - 1} (task.num_outputs = {width})"
                if width
                else "a class id (an integer >= 0)"
            )
        else:
            continue
        if bad.any():
            rows = np.nonzero(bad)[0]
            found = sorted(set(np.unique(per_row[bad]).tolist()))[:5]
            found = [int(v) if float(v).is_integer() else v for v in found]
            raise DataError(
                f"a {kind} task learns from {expected}, found {found}{' ...' if len(found) == 5 else ''}",
                file=path,
                column=column,
                rows=rows,
            )
        if width and kind == "multilabel" and len(label_columns) == 1 and per_row.shape[1] != width:
            raise DataError(
                f"a multilabel task with task.num_outputs = {width} needs lists of {width} labels, found lists of {per_row.shape[1]}",
                file=path,
                column=column,
            )
    if width and kind == "multilabel" and len(label_columns) > 1 and len(label_columns) != width:
        raise DataError(
            f"a multilabel task with task.num_outputs = {width} needs {width} label columns, found {len(label_columns)}",
            file=path,
        )


def item_counts(cfg: RunConfig) -> Optional[dict]:
    """two_tower with logQ: ``{"ids": (I,), "counts": (I,)}`` training rows per item id (read from
    the item column alone); None otherwise.

    Raises:
        DataError: naming the file, column and rows of a non-integer or null item id.
    """
    if cfg.model.task != "two_tower" or not cfg.task.logq:
        return None
    column = cfg.data.item_column
    found = [read_key_column(path, open_parquet(path), column) for path in resolve_inputs(list(cfg.data.train))]
    ids, counts = np.unique(np.concatenate(found), return_counts=True)
    return {"ids": ids.astype(np.int64), "counts": counts.astype(np.int64)}
