"""Options of the job commands (``deepsets init``, ``fit``, ``tune``, ``embed``, ``ablate``,
``retrieve``): validated up front, every bad option named on one line.

Each option is one field of the job's config model, declared once: its name, type, default and
description are also its command-line flag, value, default and help
(``deepsets.pipelines.commands.config_flags`` builds the parser from them). Where the field does
not say how it is written on the command line, a :class:`Flag` beside it does::

    inputs: Annotated[List[str], Flag("--input")] = Field(min_length=1, description="Parquet files")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any, Mapping, Optional, TypeVar

from pydantic import BaseModel, Field, ValidationError

from deepsets.features.errors import describe_problem, location
from deepsets.pipelines.errors import ConfigError

Options = TypeVar("Options", bound=BaseModel)


@dataclass(frozen=True)
class Flag:
    """How a job option is written on the command line, where its field does not say it.

    Attributes:
        name: the flag, when not ``--`` plus the field's name with ``-`` for ``_`` (``--input``
            for ``inputs``; ``--no-mlflow`` for a switch whose field defaults to true).
        metavar: the value's name in the usage line.
        group: the heading the flag is listed under in ``--help``.
        repeat: a list given one item per use of the flag (``--items a --items b``); otherwise
            a list takes one or more values after one flag.
        separator: a list given as one value, its items joined by this (``--methods loo,only``).
        required: the flag must be given, although a Python caller may leave the field out
            (``fit``'s ``--out``: without it the Python API keeps the spec in memory).
    """

    name: Optional[str] = None
    metavar: Optional[str] = None
    group: Optional[str] = None
    repeat: bool = False
    separator: Optional[str] = None
    required: bool = False


ModelUri = Annotated[
    str, Field(min_length=1, description="MLflow model URI (runs:/..., models:/...) or a checkpoint directory")
]
"""The trained model a job runs: ``model`` of every such job."""

RayAddress = Annotated[
    Optional[str], Field(description="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
]
"""The Ray cluster a job joins: ``ray_address``."""


def path_text(value: Any) -> Any:
    """A path given as ``os.PathLike`` (``pathlib.Path``) as its text; anything else as it is,
    for the field's own type to check (a ``mode="before"`` validator of path fields)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def path_list(value: Any) -> Any:
    """One path or a list of paths (text or ``os.PathLike``) as a list of texts; anything else
    as it is, for the field's own type to check."""
    if isinstance(value, (str, os.PathLike)):
        return [path_text(value)]
    if isinstance(value, (list, tuple)):
        return [path_text(item) for item in value]
    return value


def parse_options(cls: type[Options], command: str, values: Mapping[str, Any]) -> Options:
    """``cls(**values)`` for a command's options.

    Raises:
        ConfigError: ``<command> options: field: problem; ...``, every bad field.
    """
    try:
        return cls(**values)
    except ValidationError as err:
        names = [info.alias or name for name, info in cls.model_fields.items()]  # as they are passed
        problems = [f"{location(e['loc']) or '(options)'}: {describe_problem(e, names)}" for e in err.errors()]
        raise ConfigError(f"{command} options", problems) from None
