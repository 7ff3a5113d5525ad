"""The search space of ``deepsets tune``: a TOML file over any ``--set``-able config key.

An example is ``configs/tune_space.toml`` (parsed and checked by the tests); its fields are in the
configuration reference the docs site generates from :class:`SearchSpace`.

Every key must name a field of the run config (``section.field``), and every value a trial can
draw (each choice, each bound of a range) is checked up front by the run config's own validation
(:func:`value_problems`). Without a space file the search uses :func:`default_space`.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from deepsets.pipelines.config import parse_run_config
from deepsets.pipelines.config.sections import SECTIONS, section_fields
from deepsets.pipelines.errors import ConfigError

DISTRIBUTIONS = ("choice", "uniform", "loguniform")
DEFAULT_PARAMS: Dict[str, Any] = {
    "training.lr": {"loguniform": [1e-4, 1e-2]},
    "model.dim": [32, 64, 128],
    "model.dropout": {"uniform": [0.0, 0.3]},
    "model.modality_dropout": {"uniform": [0.0, 0.3]},
}
"""The space searched when no space file is given; epochs stay the run config's (ASHA's last rung)."""


def with_params(raw: Dict[str, Any], params: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of the config dict with each ``section.field`` of ``params`` set."""
    out = copy.deepcopy(raw)
    for key, value in params.items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value.item() if hasattr(value, "item") else value
    return out


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
        if section_fields(section)[name].annotation is int:
            low, high = math.ceil(low), math.floor(high) + 1  # randint's upper bound is exclusive
            return tune.lograndint(low, high) if self.distribution == "loguniform" else tune.randint(low, high)
        return tune.loguniform(low, high) if self.distribution == "loguniform" else tune.uniform(low, high)

    def extremes(self) -> tuple:
        """Every choice, or the two bounds a range can draw (integer fields: the integers inside)."""
        if self.distribution == "choice":
            return self.values
        section, _, name = self.key.partition(".")
        if section_fields(section)[name].annotation is int:
            return (math.ceil(self.values[0]), math.floor(self.values[1]))
        return self.values

    def describe(self) -> str:
        """``training.lr loguniform [0.0001, 0.01]``."""
        return f"{self.key} {self.distribution} {list(self.values)}"


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space file."""

    params: List[Param]
    trials: Optional[int] = None  # None: not given (8, or open-ended under a time budget)
    grace_epochs: int = 1  # ASHA: every trial runs at least this many epochs
    reduction_factor: int = 2  # ASHA: keep about 1 in this many trials at each rung

    def tune_space(self) -> Dict[str, Any]:
        return {p.key: p.sample_space() for p in self.params}


def _param(key: str, value: Any) -> tuple[Optional[Param], Optional[str]]:
    section, _, name = key.partition(".")
    if section not in SECTIONS or name not in section_fields(section) or section == "schema":
        return (
            None,
            f'params."{key}": not a run-config field (section.field, e.g. "training.lr"; the schema cannot be searched)',
        )
    if isinstance(value, list):
        value = {"choice": value}
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        return (
            None,
            f'params."{key}": give a list of choices or one of {{choice = [...]}}, {{uniform = [low, high]}}, {{loguniform = [low, high]}} (found {value!r})',
        )
    distribution, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        return None, f'params."{key}": {distribution} needs a non-empty list (found {args!r})'
    if distribution != "choice":
        numbers = len(args) == 2 and all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args
        )
        if not numbers or args[0] >= args[1] or (distribution == "loguniform" and args[0] <= 0):
            return (
                None,
                f'params."{key}": {distribution} needs [low, high] with low < high{" and low > 0" if distribution == "loguniform" else ""} (found {args!r})',
            )
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
        problems.append('params: give at least one searched key, e.g. "training.lr" = { loguniform = [1e-4, 1e-2] }')
    else:
        for key, value in params_raw.items():
            param, problem = _param(key, value)
            params += [param] if param else []
            problems += [problem] if problem else []
    if problems:
        raise ConfigError(source, problems)
    return SearchSpace(params, raw.get("trials"), raw.get("grace_epochs", 1), raw.get("reduction_factor", 2))


def value_problems(param: Param, base: Dict[str, Any]) -> List[str]:
    """What the run config ``base`` (``RunConfig.as_dict()``) says about each value ``param`` can
    draw; empty when every one is valid."""
    low, high = param.extremes()[0], param.extremes()[-1]
    if param.distribution != "choice" and low > high:
        return [f'params."{param.key}": no integer between {param.values[0]} and {param.values[1]}']
    problems = []
    for value in dict.fromkeys(param.extremes()):
        try:
            parse_run_config(with_params(base, {param.key: value}), "space")
        except ConfigError as err:
            problems.append(
                f'params."{param.key}": the value {value!r} is refused by the run config ({"; ".join(err.problems)})'
            )
    return problems


def check_values(space: SearchSpace, base: Dict[str, Any], source: str) -> None:
    """Refuse a space with a value that no trial could train with, before any trial starts.

    Raises:
        ConfigError: listing every refused value of every key.
    """
    problems = [problem for param in space.params for problem in value_problems(param, base)]
    if problems:
        raise ConfigError(source, problems)


def default_space(base: Dict[str, Any]) -> SearchSpace:
    """:data:`DEFAULT_PARAMS` fitted to the run config ``base``: a choice it refuses (a ``model.dim``
    its ``model.heads`` do not divide) is left out, as is a range with a refused bound."""
    params = []
    for key, value in DEFAULT_PARAMS.items():
        param, _ = _param(key, value)
        if param.distribution == "choice":
            kept = tuple(v for v in param.values if not value_problems(Param(key, "choice", (v,)), base))
            param = Param(key, "choice", kept) if kept else None
        elif value_problems(param, base):
            param = None
        params += [param] if param else []
    return SearchSpace(params)


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
