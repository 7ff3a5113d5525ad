"""Options of the commands that run a trained model (``deepsets embed``, ``deepsets ablate``,
``deepsets retrieve``): validated up front, every bad option named on one line.

Each option is one field of the job's config model, declared once: its name, type, default and
description are also its command-line flag, value, default and help
(``deepsets.pipelines.commands.config_flags`` builds the parser from them). Where the field does
not say how it is written on the command line, a :class:`Flag` beside it does::

    inputs: Annotated[List[str], Flag("--input")] = Field(min_length=1, description="Parquet files")
"""

from __future__ import annotations

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
    """

    name: Optional[str] = None
    metavar: Optional[str] = None
    group: Optional[str] = None
    repeat: bool = False
    separator: Optional[str] = None


ModelUri = Annotated[
    str, Field(min_length=1, description="MLflow model URI (runs:/..., models:/...) or a checkpoint directory")
]
"""The trained model a job runs: ``model`` of every such job."""

RayAddress = Annotated[
    Optional[str], Field(description="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
]
"""The Ray cluster a job joins: ``ray_address``."""


def parse_options(cls: type[Options], command: str, values: Mapping[str, Any]) -> Options:
    """``cls(**values)`` for a command's options.

    Raises:
        ConfigError: ``<command> options: field: problem; ...``, every bad field.
    """
    try:
        return cls(**values)
    except ValidationError as err:
        problems = [
            f"{location(e['loc']) or '(options)'}: {describe_problem(e, list(cls.model_fields))}" for e in err.errors()
        ]
        raise ConfigError(f"{command} options", problems) from None
