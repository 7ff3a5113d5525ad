"""The one timing rule every benchmark here uses: best of a few runs, optionally after a warm-up."""

from __future__ import annotations

import time
from typing import Callable


def best_seconds(fn: Callable[[], object], repeats: int, warmup: bool = False) -> float:
    """Shortest wall time of ``repeats`` calls of ``fn`` (after one untimed call if ``warmup``)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
