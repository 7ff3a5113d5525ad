"""``deepsets tune --budget``: the search's wall-clock time, as ``90s``, ``20m``, ``1h``, ``1h30m``
or plain seconds (``300``)."""

from __future__ import annotations

import re

from deepsets.pipelines.errors import ConfigError

UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = r"(\d+(?:\.\d+)?)([hms])"


def parse_budget(text: str) -> float:
    """Seconds of a duration such as ``90s``, ``20m``, ``1h``, ``1h30m`` or ``300``.

    Args:
        text: the value of ``--budget``.

    Raises:
        ConfigError: ``--budget: ...`` for anything else, or for no time at all.
    """
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif re.fullmatch(f"(?:{_PART})+", value):
        seconds = sum(float(number) * UNIT_SECONDS[unit] for number, unit in re.findall(_PART, value))
    else:
        raise ConfigError(
            "--budget", [f"expected a duration such as 90s, 20m, 1h, 1h30m or plain seconds (found {text!r})"]
        )
    if seconds <= 0:
        raise ConfigError("--budget", [f"must be more than 0 seconds (found {text!r})"])
    return seconds
