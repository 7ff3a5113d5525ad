"""How a training worker shows its progress: a bar on a terminal, plain lines in a log.

| mode    | chosen when (by the driver)           | per step                                   | per epoch        |
|---------|---------------------------------------|--------------------------------------------|------------------|
| `bar`   | progress on and stdout is a terminal  | a bar (Ray's driver-side tqdm): steps, loss | the metrics line |
| `lines` | progress on, stdout redirected        | a line every tenth of the epoch             | the metrics line |
| `off`   | progress off (benchmarks, tests)      | nothing                                     | nothing          |

Epochs are counted from 1 in every line, as in ``--json`` (``selected.epoch``, ``metrics.epoch``).
"""

from __future__ import annotations

import sys
from typing import Optional

MODES = ("bar", "lines", "off")


def progress_mode(progress: bool) -> str:
    """The mode for a run started with ``progress`` from this (driver) process."""
    if not progress:
        return "off"
    return "bar" if sys.stdout.isatty() else "lines"


class EpochProgress:
    """Rank 0's progress through one epoch of ``steps`` steps.

    Args:
        mode: one of :data:`MODES`.
        epoch: the epoch counted from 1; ``epochs``: how many the run has.
        steps: steps in the epoch (the bar's total).
    """

    def __init__(self, mode: str, epoch: int, epochs: int, steps: int) -> None:
        self.mode, self.label, self.steps = mode, f"epoch {epoch}/{epochs}", max(1, steps)
        self.every = max(1, self.steps // 10)
        self.bar: Optional[object] = None
        if mode == "bar":
            from ray.experimental.tqdm_ray import tqdm

            self.bar = tqdm(total=self.steps, desc=self.label, unit="step")

    def step(self, done: int, mean_loss: float) -> None:
        """After step ``done`` (counted from 1) of the epoch, with the epoch's mean loss so far."""
        if self.bar is not None:
            self.bar.set_description(f"{self.label} loss {mean_loss:.4f}")
            self.bar.update(1)
        elif self.mode == "lines" and done % self.every == 0:
            print(f"{self.label} step {done}/{self.steps} loss {mean_loss:.4f}", flush=True)

    def end(self, metrics: dict) -> None:
        """The epoch's metrics line (none when ``off``)."""
        if self.bar is not None:
            self.bar.close()
        if self.mode != "off":
            print(f"{self.label}: " + ", ".join(f"{k} {shown_value(v)}" for k, v in metrics.items()), flush=True)


def shown_value(value: float) -> str:
    """A metric as the epoch line prints it: whole numbers (row counts) in full, the rest to 4 digits."""
    return f"{int(value)}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"
