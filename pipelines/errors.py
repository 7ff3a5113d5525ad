"""Errors of the jobs, named for what went wrong. The CLI prints every one of them as a single
``error:`` line and exits with status 2.

| error                            | raised when                                                      |
|----------------------------------|------------------------------------------------------------------|
| ``deepsets.features.errors.DataError``    | the data is not what the spec expects (file, column, rows named) |
| ``deepsets.features.errors.SchemaError``  | a feature schema has problems (each with its location)           |
| :class:`ConfigError`             | a run config or a command's options have problems (each located) |
| :class:`JobError`                | a job cannot go on as asked: a run name taken or not resumable,  |
|                                  | a model or checkpoint that cannot be loaded, an output folder in |
|                                  | the way, training that failed                                    |
"""

from __future__ import annotations

from deepsets.features.errors import DataError, ValidationProblems


class ConfigError(ValidationProblems):
    """A run config (TOML, ``--set`` overrides) or a command's options with problems, all listed."""


class JobError(RuntimeError):
    """A job cannot go on as asked; the message says what to do instead."""


USER_ERRORS = (DataError, ValidationProblems, JobError)
"""What the CLI reports as one ``error:`` line (exit 2) rather than an internal error."""
