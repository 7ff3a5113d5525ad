"""What ``deepsets tune`` is asked to do: :class:`TuneConfig`, validated before anything runs.

Each field is also the command's flag (``ray_address`` is ``--ray-address``, its description the
help); this module imports neither Ray nor MLflow, so the command line is built from it cheaply.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deepsets.pipelines.errors import ConfigError
from deepsets.pipelines.options import Flag, RayAddress, parse_options, path_text
from deepsets.pipelines.tuning.budget import parse_budget


class TuneConfig(BaseModel):
    """What ``deepsets tune`` is asked to do (validated before anything runs)."""

    model_config = ConfigDict(extra="forbid")

    config: str = Field(min_length=1, description="run config TOML (see docs/training.md); needs data.valid")
    space: Optional[str] = Field(
        None,
        description="search space TOML (see docs/choosing-settings.md; default: learning rate, "
        "model dim, dropout and modality dropout, printed at start)",
    )
    trials: Optional[int] = Field(
        None,
        ge=1,
        description="configurations to try (default: the space's trials, else 8; with --budget: as many as it allows)",
    )
    budget: Annotated[Union[str, float, None], Flag(metavar="TIME")] = Field(
        None,
        description="wall-clock time for the whole search: 90s, 20m, 1h, 1h30m or "
        "seconds; trials still running then are stopped and the best that ended is reported",
    )
    """Seconds once validated: text as ``--budget`` takes it is read by :func:`parse_budget`."""
    overrides: Annotated[List[str], Flag("--set", metavar="SECTION.FIELD=VALUE", repeat=True)] = Field(
        default_factory=list, description="override a config field for every trial (repeatable)"
    )
    out: Optional[str] = Field(None, description="output directory (default: tune-<date>-<time>)")
    overwrite: bool = Field(False, description="replace an earlier search's results in --out")
    ray_address: RayAddress = None

    @field_validator("config", "space", "out", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return path_text(value)

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_seconds(cls, value: Any) -> Optional[float]:
        """``"20m"`` -> 1200.0; a number is seconds already. Both must be more than 0."""
        if value is None:
            return None
        if isinstance(value, bool):
            raise ValueError(f"expected a duration such as 90s, 20m, 1h, 1h30m or seconds (found {value!r})")
        try:
            seconds = parse_budget(value) if isinstance(value, str) else float(value)
        except ConfigError as err:
            raise ValueError("; ".join(err.problems)) from None
        except (TypeError, ValueError):
            raise ValueError(f"expected a duration such as 90s, 20m, 1h, 1h30m or seconds (found {value!r})") from None
        if not seconds > 0:  # also NaN
            raise ValueError(f"must be more than 0 seconds (found {value!r})")
        return seconds


def parse_tune_config(**values) -> TuneConfig:
    """:class:`TuneConfig` from keyword values (``budget`` as text or seconds).

    Raises:
        ConfigError: every bad option.
    """
    return parse_options(TuneConfig, "tune", values)


def run_tune_config(cfg: TuneConfig, *, progress: bool = True) -> dict:
    """Run the search ``cfg`` asks for (:func:`deepsets.pipelines.tuning.job.run_tune`); an empty
    ``tracking.mlflow_uri`` in the run config is taken from ``MLFLOW_TRACKING_URI`` when the
    caller's environment sets it, as ``deepsets train`` does.

    Args:
        cfg: the checked options.
        progress: print each trial as it ends.

    Returns:
        The summary ``deepsets tune --json`` prints: the trials, the best one, ``best.toml``.

    Raises:
        ConfigError: a bad run config or space, or a run with no validation metric to compare.
        JobError: ``cfg.out`` holds an earlier search and ``cfg.overwrite`` is false.
        DataError: bad training data.
    """
    from deepsets.pipelines.tuning import job  # Ray and MLflow, only when a search runs

    return job.run_tune(
        cfg.config,
        cfg.space,
        overrides=list(cfg.overrides),
        trials=cfg.trials,
        budget_s=cfg.budget,
        out=cfg.out,
        overwrite=cfg.overwrite,
        mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
        ray_address=cfg.ray_address,
        progress=progress,
    )
