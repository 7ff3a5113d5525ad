"""The search space of ``deepsets tune``: a TOML file over any ``--set``-able config key.

    # space.toml
    trials = 8                       # how many configurations to try (--trials wins)
    grace_epochs = 1                 # ASHA: every trial runs at least this many epochs
    reduction_factor = 2             # ASHA: keep about 1 in this many trials at each rung

    [params]
    "model.dim" = [32, 64, 128]                        # a list: one of these
    "model.fusion" = ["deepset", "transformer"]
    "training.lr" = { loguniform = [1e-4, 1e-2] }      # log-uniform between the bounds
    "model.dropout" = { uniform = [0.0, 0.3] }         # uniform between the bounds
    "training.batch_size" = { choice = [256, 512] }    # the same as a list

Every key must name a field of the run config (``section.field``) and every sampled value is
checked by the run config's own validation when its trial starts.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from deepsets.pipelines.config.sections import SECTIONS
from deepsets.pipelines.errors import ConfigError

DISTRIBUTIONS = ("choice", "uniform", "loguniform")


@dataclass(frozen=True)
class Param:
    """One searched key: a distribution and its arguments (choices, or low and high)."""

    key: str
    distribution: str
    values: tuple

    def sample_space(self):
        """The Ray Tune search-space object for this key (integers for integer fields)."""
        from ray import tune

        if self.distribution == "choice":
            return tune.choice(list(self.values))
        low, high = self.values
        section, _, name = self.key.partition(".")
        if SECTIONS[section].model_fields[name].annotation is int:
            low, high = math.ceil(low), math.floor(high) + 1  # randint's upper bound is exclusive
            return tune.lograndint(low, high) if self.distribution == "loguniform" else tune.randint(low, high)
        return tune.loguniform(low, high) if self.distribution == "loguniform" else tune.uniform(low, high)


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space file."""

    params: List[Param]
    trials: int = 8
    grace_epochs: int = 1
    reduction_factor: int = 2

    def tune_space(self) -> Dict[str, Any]:
        return {p.key: p.sample_space() for p in self.params}


def _param(key: str, value: Any) -> tuple[Optional[Param], Optional[str]]:
    section, _, name = key.partition(".")
    if section not in SECTIONS or name not in SECTIONS[section].model_fields or section == "schema":
        return None, f"params.\"{key}\": not a run-config field (section.field, e.g. \"training.lr\"; the schema cannot be searched)"
    if isinstance(value, list):
        value = {"choice": value}
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        return None, f"params.\"{key}\": give a list of choices or one of {{choice = [...]}}, {{uniform = [low, high]}}, {{loguniform = [low, high]}} (found {value!r})"
    distribution, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        return None, f"params.\"{key}\": {distribution} needs a non-empty list (found {args!r})"
    if distribution != "choice":
        numbers = len(args) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args)
        if not numbers or args[0] >= args[1] or (distribution == "loguniform" and args[0] <= 0):
            return None, f"params.\"{key}\": {distribution} needs [low, high] with low < high{' and low > 0' if distribution == 'loguniform' else ''} (found {args!r})"
    return Param(key, distribution, tuple(args)), None


def parse_space(raw: Dict[str, Any], source: str = "<space>") -> SearchSpace:
    """Validate a space given as a dict.

    Raises:
        ConfigError: listing every problem.
    """
    problems: List[str] = []
    unknown = sorted(set(raw) - {"params", "trials", "grace_epochs", "reduction_factor"})
    problems += [f"{k}: unknown field (expected params, trials, grace_epochs, reduction_factor)" for k in unknown]
    for key, low in (("trials", 1), ("grace_epochs", 1), ("reduction_factor", 2)):
        if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < low):
            problems.append(f"{key}: must be an integer >= {low} (found {raw[key]!r})")
    params_raw = raw.get("params")
    params: List[Param] = []
    if not isinstance(params_raw, dict) or not params_raw:
        problems.append("params: give at least one searched key, e.g. \"training.lr\" = { loguniform = [1e-4, 1e-2] }")
    else:
        for key, value in params_raw.items():
            param, problem = _param(key, value)
            params += [param] if param else []
            problems += [problem] if problem else []
    if problems:
        raise ConfigError(source, problems)
    return SearchSpace(params, raw.get("trials", 8), raw.get("grace_epochs", 1), raw.get("reduction_factor", 2))


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space TOML file.

    Raises:
        ConfigError: for a missing file, a TOML syntax error, or any problem (all listed).
    """
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(str(path), [f"cannot read space file: {err.strerror or err}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), [f"TOML syntax error: {err}"]) from None
    return parse_space(raw, str(path))
