"""The training run configuration: one TOML file, validated before anything runs.

Every problem is reported at once, one line each, starting with its dotted location::

    run.toml: 3 problems: training.lr: Input should be greater than 0 (found -1); model.fusion: ...

Every section but ``[data]`` and ``[schema]``, and every field with a default, may be left out.
Worked examples are the files under ``configs/`` (``configs/demo.toml``: the demo's run); every
field, with its type, default and meaning, is in the configuration reference that the docs site
generates from these models (``docs/hooks/config_reference.py``), so neither is restated here.

The package, by concern: :mod:`.sections` (one pydantic model per section, and ``RunConfig``),
:mod:`.checks` (checks across fields), :mod:`.loading` (files, ``--set`` overrides, paths,
collecting every problem into one :class:`deepsets.pipelines.errors.ConfigError`), :mod:`.toml_text`
(writing a config back as TOML).

Relative paths in the file are relative to the file's directory; :mod:`.loading` says how each
path is resolved.
"""

from deepsets.pipelines.config.loading import load_run_config, parse_run_config
from deepsets.pipelines.config.sections import (
    SECTIONS,
    DataConfig,
    RunConfig,
    ScalingConfig,
    SchemaConfig,
    TaskConfig,
    TrackingConfig,
    TrainingConfig,
    section_fields,
)

__all__ = [
    "SECTIONS",
    "DataConfig",
    "RunConfig",
    "ScalingConfig",
    "SchemaConfig",
    "TaskConfig",
    "TrackingConfig",
    "TrainingConfig",
    "load_run_config",
    "parse_run_config",
    "section_fields",
]
