"""What ``deepsets init`` is asked to do: :class:`InitConfig`, validated before anything runs.

Each field is also the command's flag (``id_column`` is ``--id``, its description the help); this
module imports neither polars nor pyarrow, so the command line is built from it cheaply.
"""

from __future__ import annotations

from typing import Annotated, Any, List, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepsets.pipelines.options import Flag, parse_options, path_list, path_text


class InitConfig(BaseModel):
    """What ``deepsets init`` is asked to do (validated before anything runs)."""

    model_config = ConfigDict(extra="forbid")

    inputs: Annotated[List[str], Flag("--input")] = Field(
        min_length=1, description="training Parquet files, directories or globs"
    )
    label: str = Field(min_length=1, description="the label column")
    valid: Optional[List[str]] = Field(None, min_length=1, description="validation Parquet files, directories or globs")
    id_column: Annotated[Optional[str], Flag("--id", metavar="ID_COLUMN")] = Field(
        None, min_length=1, description="the row id column (default: a unique int or string column)"
    )
    out: str = Field(".", min_length=1, description="folder for schema.toml and run.toml (default: the current one)")
    overwrite: bool = Field(False, description="replace schema.toml and run.toml already in --out")

    @field_validator("inputs", "valid", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        return path_list(value)

    @field_validator("out", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return path_text(value)


def parse_init_config(**values) -> InitConfig:
    """:class:`InitConfig` from keyword values.

    Raises:
        ConfigError: every bad option.
    """
    return parse_options(InitConfig, "init", values)
