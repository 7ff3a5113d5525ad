"""Errors for bad input: one line naming file, column, rows, expected and found."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


class FeatureError(ValueError):
    """Bad data or a bad schema, reported as one line a user can act on.

    Args:
        message: what was expected and what was found.
        file: the input file, if known.
        column: the column, if known.
        rows: file-relative row numbers (0-based) that are bad, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: Optional[str] = None,
        column: Optional[str] = None,
        rows: Optional[Sequence[int]] = None,
    ) -> None:
        self.file = file
        self.column = column
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.column:
            where.append(f"column '{self.column}'")
        if self.rows is not None and self.rows.size:
            where.append(describe_rows(self.rows))
        prefix = ": ".join([", ".join(where)]) if where else ""
        return f"{prefix}: {self.detail}" if prefix else self.detail

    def located(self, file: str, row_base: int) -> "FeatureError":
        """The same error with a file and batch-relative rows made file-relative."""
        rows = None if self.rows is None else self.rows + row_base
        return FeatureError(self.detail, file=self.file or file, column=self.column, rows=rows)


class SchemaError(ValueError):
    """A schema TOML (or run config) with one or more problems, all listed.

    Args:
        source: the file the problems were found in.
        problems: one line per problem, each starting with its location.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = f"{source}: {self.problems[0]}"
        else:
            text = f"{source}: {len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(text)


def describe_rows(rows: np.ndarray) -> str:
    """'row 17' or 'rows 17..903 (12 rows)': the first and last bad row and how many are bad."""
    if rows.size == 1:
        return f"row {int(rows[0])}"
    return f"rows {int(rows.min())}..{int(rows.max())} ({rows.size} rows)"
