"""Options of the commands that run a trained model (``deepsets embed``, ``deepsets ablate``):
validated up front, every bad option named on one line."""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ValidationError

from deepsets.features.errors import describe_problem, location
from deepsets.pipelines.errors import ConfigError

Options = TypeVar("Options", bound=BaseModel)


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
