"""Which rows of the training files each of N data-parallel workers reads in an epoch.

The epoch's rows are a sequence of *units* (whole files in file order, or, when shuffled, every
row group of every file in a seeded random order); the sequence is cut into N contiguous shares
and each worker decodes only its own share. A unit that one cut between two equal (training)
shares splits is handed out smaller piece first, since the share taking a row group's tail has
to decode its head to reach it. Every worker computes the same plan from the same
seed, so no coordination is needed and a resumed run reads what the uninterrupted one read.

    units = epoch_units(files, rng)                 # [(path, start, stop), ...]
    ranges, dropped = shard(units, rank=1, world=4, equal=True)
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from deepsets.features.files import open_parquet

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
    """Rank ``rank``'s contiguous share of the rows of ``units`` (in their order; with ``equal``,
    the two pieces of a unit cut between two shares may be swapped, smaller piece first).

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
        n = stop - start
        lo, hi = max(begin, offset), min(end, offset + n)
        if hi > lo:
            lo, hi = _oriented(
                lo - offset,
                hi - offset,
                n,
                begin - offset,
                end - offset,
                size_if_equal=end - begin if equal else None,
                has_next=rank < world - 1,
            )
            ranges.append((path, start + lo, start + hi))
        offset += n
        if offset >= end:
            break
    return ranges, left_out


def _oriented(
    lo: int, hi: int, n: int, begin: int, end: int, size_if_equal: Optional[int], has_next: bool
) -> Tuple[int, int]:
    """This share's rows ``[lo, hi)`` of a unit of ``n`` rows, swapped with its neighbour's
    when one cut between two equal shares splits the unit and the earlier share's piece is the
    larger: the piece that takes the unit's tail must decode the head to reach it (Parquet
    cannot skip rows inside a row group), so the smaller piece goes first and at most half a
    row group is decoded twice. ``begin`` / ``end``: the share's bounds relative to the unit;
    ``has_next``: a share follows this one (after the last come the rows left out)."""
    if size_if_equal is None:
        return lo, hi
    if (
        has_next and 0 < end < n and begin <= 0 and end + size_if_equal >= n
    ):  # the unit is this share's head ... the next share's tail
        head, tail = end, n - end
        return (n - head, n) if head > tail else (lo, hi)
    if 0 < begin < n and end >= n and begin - size_if_equal <= 0:  # the previous share's head ... this share's tail
        head, tail = begin, n - begin
        return (0, tail) if head > tail else (lo, hi)
    return lo, hi
