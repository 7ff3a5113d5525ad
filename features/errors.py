"""Errors a user can act on: bad data (one line naming file, column, rows, expected and found)
and bad declarations (every problem of a schema or config file, each with its location).

    DataError         a value, column or file of the data is not what the spec expects
    ValidationProblems  a declaration (schema TOML, run config, job options) with problems:
      SchemaError       ... in a feature schema
                        (pipelines adds ConfigError for run configs and job options)

:func:`describe_problem` turns one pydantic error into ``location: message (found value)``,
the same way for schemas and configs.
"""

from __future__ import annotations

import difflib
from typing import Any, Optional, Sequence

import numpy as np


class DataError(ValueError):
    """Bad data, reported as one line a user can act on.

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
        prefix = ", ".join(where)
        return f"{prefix}: {self.detail}" if prefix else self.detail

    def located(self, file: str, row_base: int) -> "DataError":
        """The same error with a file and batch-relative rows made file-relative."""
        rows = None if self.rows is None else self.rows + row_base
        return DataError(self.detail, file=self.file or file, column=self.column, rows=rows)


class ValidationProblems(ValueError):
    """A declaration (a file, or options) with one or more problems, all listed.

    Args:
        source: the file (or what) the problems were found in.
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

    def __reduce__(self):
        # rebuilt from its own arguments: Ray pickles an error raised in a worker or a Tune trial
        # (the default would call __init__ with the message alone and fail)
        return (type(self), (self.source, self.problems))


class SchemaError(ValidationProblems):
    """A feature schema (TOML, or the schema part of a spec or run config) with problems."""


def describe_rows(rows: np.ndarray) -> str:
    """'row 17' or 'rows 17..903 (12 rows)': the first and last bad row and how many are bad."""
    if rows.size == 1:
        return f"row {int(rows[0])}"
    return f"rows {int(rows.min())}..{int(rows.max())} ({rows.size} rows)"


def location(loc: Sequence[Any]) -> str:
    """``("model", "fusion")`` -> ``model.fusion``; ``("modality", 2, "dim")`` -> ``modality[2].dim``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def unknown_name(name: str, choices: Sequence[str], what: str) -> str:
    """'unknown field (did you mean 'max_len'?)', or the choices when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    if close:
        return f"unknown {what} (did you mean '{close[0]}'?)"
    return f"unknown {what} (expected one of {', '.join(choices)})"


def describe_problem(error: dict, fields: Sequence[str] = ()) -> str:
    """The message of one pydantic error (``ValidationError.errors()`` item) for a person
    editing the file: a misspelt field gets a suggestion from ``fields``, lists are called
    lists, and the value found is shown.
    """
    kind, loc = error["type"], tuple(error["loc"])
    if kind == "extra_forbidden":
        return unknown_name(str(loc[-1]), list(fields), "field") if fields else "unknown field"
    msg = error["msg"].removeprefix("Value error, ")
    if kind == "tuple_type":  # tuples are how lists are stored; the author wrote an array
        msg = "Input should be a list"
    elif kind == "too_short" and isinstance(error.get("input"), (list, tuple)):
        n = error["ctx"]["min_length"]
        msg = f"List should have at least {n} item{'s' if n != 1 else ''}"
    found = error.get("input")
    if kind != "missing" and isinstance(found, (int, float, str)) and "(found" not in msg:
        msg += f" (found {found!r})"
    return msg
