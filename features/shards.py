"""Which rows of the training files each of N data-parallel workers reads in an epoch.

The epoch's rows are a sequence of *units* (whole files in file order, or, when shuffled, every
row group of every file in a seeded random order); the sequence is cut into N contiguous shares
and each worker decodes only its own share. Every worker computes the same plan from the same
seed, so no coordination is needed and a resumed run reads what the uninterrupted one read.

    units = epoch_units(files, rng)                 # [(path, start, stop), ...]
    ranges, dropped = shard(units, rank=1, world=4, equal=True)
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from features.files import open_parquet

RowRange = Tuple[str, int, int]
"""``(path, start, stop)``: file-relative rows ``[start, stop)`` of one Parquet file."""


def epoch_units(files: Sequence[str], rng: Optional[np.random.Generator]) -> List[RowRange]:
    """The epoch's row sequence: whole files in order, or (with ``rng``) every row group of
    every file in a random order drawn from ``rng``.

    Raises:
        DataError: naming a file that is not Parquet.
    """
    if rng is None:
        return [(path, 0, open_parquet(path).metadata.num_rows) for path in files]
    units: List[RowRange] = []
    for path in files:
        meta, row = open_parquet(path).metadata, 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if n:
                units.append((path, row, row + n))
            row += n
    return [units[i] for i in rng.permutation(len(units))]


def shard(units: Sequence[RowRange], rank: int, world: int, equal: bool) -> Tuple[List[RowRange], int]:
    """Rank ``rank``'s contiguous share of the rows of ``units`` (in their order).

    Args:
        rank, world: this worker and the number of workers (``0 <= rank < world``).
        equal: every share has exactly ``total // world`` rows and the last ``total % world``
            rows of the sequence are left out (training: every rank takes the same number of
            steps); otherwise the shares differ by at most one row and cover every row
            (validation).

    Returns:
        ``(ranges, left_out)``: this rank's row ranges, and the rows no rank reads (only with
        ``equal``; reported once, by rank 0, as 0 for the others).

    Raises:
        ValueError: for a rank outside ``0 .. world - 1``.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in 0..{world - 1}, got {rank}")
    total = sum(stop - start for _, start, stop in units)
    if equal:
        size = total // world
        begin, end, left_out = rank * size, (rank + 1) * size, (total - size * world if rank == 0 else 0)
    else:
        begin, end, left_out = total * rank // world, total * (rank + 1) // world, 0
    ranges: List[RowRange] = []
    offset = 0  # position of the unit's first row in the epoch sequence
    for path, start, stop in units:
        lo, hi = max(begin, offset), min(end, offset + stop - start)
        if hi > lo:
            ranges.append((path, start + lo - offset, start + hi - offset))
        offset += stop - start
        if offset >= end:
            break
    return ranges, left_out
