"""``deepsets fit``: :class:`FitConfig`, what the job is asked to do, and :func:`run_fit`, which
fits a feature spec on training Parquet.

Each field of :class:`FitConfig` is also the command's flag (``overwrite`` is ``--overwrite``, its
description the help). This module imports the feature code only when the job runs, so the
command line is built from it cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, InstanceOf, field_validator

from deepsets.pipelines.errors import JobError
from deepsets.pipelines.options import Flag, parse_options, path_list, path_text

if TYPE_CHECKING:
    from deepsets.features.spec import FeatureSpec


class FitConfig(BaseModel):
    """What ``deepsets fit`` is asked to do (validated before anything runs).

    From Python, ``schema`` may also be a ``FeatureSchema`` built in code, and ``out`` may be left
    out to keep the spec in memory only (the command line needs ``--out``). ``schema`` and
    ``validate`` are the names to pass: the fields are named apart from pydantic's own
    ``BaseModel.schema`` and ``BaseModel.validate``, and either name is taken.
    """

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    feature_schema: Annotated[Union[str, InstanceOf[BaseModel]], Flag("--schema")] = Field(
        alias="schema", description="schema TOML file"
    )
    inputs: Annotated[List[str], Flag("--input")] = Field(
        min_length=1, description="Parquet files, directories or globs"
    )
    out: Annotated[Optional[str], Flag(required=True)] = Field(
        None, min_length=1, description="where to write the spec JSON"
    )
    overwrite: bool = Field(False, description="replace a spec already at --out")
    check_values: Annotated[bool, Flag("--no-validate")] = Field(
        True, alias="validate", description="check every value in a second pass over the data"
    )

    @field_validator("feature_schema", "out", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return path_text(value)

    @field_validator("inputs", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        return path_list(value)

    @field_validator("feature_schema")
    @classmethod
    def _a_feature_schema(cls, value: Union[str, BaseModel]) -> Union[str, BaseModel]:
        if isinstance(value, str):
            if not value:
                raise ValueError("expected the path of a schema TOML file (found '')")
            return value
        from deepsets.features.schema import FeatureSchema  # only for a model passed from Python

        if not isinstance(value, FeatureSchema):
            raise ValueError(f"expected a schema TOML path or a FeatureSchema (found a {type(value).__name__})")
        return value


def parse_fit_config(**values) -> FitConfig:
    """:class:`FitConfig` from keyword values (``schema=``, ``inputs=``, ``out=``, ...).

    Raises:
        ConfigError: every bad option.
    """
    return parse_options(FitConfig, "fit", values)


def run_fit(cfg: FitConfig, *, progress: bool = False) -> "FeatureSpec":
    """Fit vocabularies, normalization and statistics on the training Parquet; save the spec to
    ``cfg.out`` when it is given.

    Args:
        cfg: the checked options.
        progress: show a progress bar for the pass that checks every value.

    Returns:
        The fitted spec (``spec.stats()`` holds what ``deepsets fit`` prints).

    Raises:
        SchemaError: for a bad schema file.
        DataError: for missing files or columns, wrong types or bad values (file, column, rows).
        JobError: when ``cfg.out`` exists and ``cfg.overwrite`` is false.
    """
    from deepsets.features import storage
    from deepsets.features.schema import load_schema
    from deepsets.features.spec import FeatureSpec

    if cfg.out is not None and storage.exists(cfg.out) and not cfg.overwrite:
        raise JobError(f"--out {cfg.out} already exists: pass --overwrite to replace it, or choose another --out")
    schema = load_schema(cfg.feature_schema) if isinstance(cfg.feature_schema, str) else cfg.feature_schema
    spec = FeatureSpec.fit(schema, cfg.inputs, validate=cfg.check_values, progress=progress)
    if cfg.out is not None:
        spec.save(cfg.out)
    return spec
