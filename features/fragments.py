"""Cutting Parquet inputs into fragments: contiguous row ranges of one file, each the unit of
work (and of output) of a batch job.

    fragments = plan_fragments(["a.parquet", "b.parquet"], target_rows=50_000)
    for row_base, table in read_fragment(fragments[0], columns, read_rows=1024):
        ...                                   # row_base: file-relative row of table's first row

Whole row groups are grouped up to ``target_rows``; a row group larger than that is split into
ranges of ``target_rows``. The plan depends only on the files' row-group layout and
``target_rows``, so the same inputs always give the same fragments and the same output names.

Parquet cannot start decoding in the middle of a row group: reaching row ``r`` of a group means
decoding the rows before it. Read one by one, the fragments of one split 600k-row group would
decode it ~n/2 times over. :func:`plan_runs` therefore chains such fragments into a few
contiguous runs (at most one per worker) and :func:`read_run` decodes a run in one pass:

    for run in plan_runs(fragments, workers=2):
        for fragment, row_base, table in read_run(run, columns, read_rows=1024):
            ...
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterator, List, Optional, Sequence

import polars as pl
import pyarrow as pa

from deepsets.features.errors import DataError
from deepsets.features.files import open_parquet


@dataclass(frozen=True)
class Fragment:
    """Rows ``[start, stop)`` of one Parquet file.

    Attributes:
        path: the input file.
        file_index: position of the file in the job's sorted input list.
        index: position of the fragment within its file.
        start, stop: file-relative row range.
    """

    path: str
    file_index: int
    index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        """The output file name: deterministic per (file, fragment)."""
        return f"part-{self.file_index:05d}-{self.index:05d}.parquet"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Fragment":
        return cls(
            str(data["path"]), int(data["file_index"]), int(data["index"]), int(data["start"]), int(data["stop"])
        )


def plan_fragments(files: Sequence[str], target_rows: int) -> List[Fragment]:
    """Fragments of about ``target_rows`` rows covering every row of ``files`` exactly once.

    A file with no rows gets one empty fragment, so every input file has an output.

    Raises:
        ValueError: for ``target_rows < 1``.
        DataError: naming a file that is not Parquet.
    """
    if target_rows < 1:
        raise ValueError(f"target_rows must be >= 1, got {target_rows}")
    fragments: List[Fragment] = []
    for file_index, path in enumerate(files):
        meta = open_parquet(path).metadata
        ranges: List[tuple] = []
        start = stop = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if stop > start and stop - start + n > target_rows:  # close the open range first
                ranges.append((start, stop))
                start = stop
            if n > target_rows:  # a big row group: split it
                for s in range(stop, stop + n, target_rows):
                    ranges.append((s, min(s + target_rows, stop + n)))
                start = stop = stop + n
            else:
                stop += n
        if stop > start or not ranges:
            ranges.append((start, stop))
        fragments.extend(Fragment(path, file_index, i, s, e) for i, (s, e) in enumerate(ranges))
    return fragments


def _row_groups_of(parquet, start: int, stop: int) -> tuple[List[int], int]:
    """The row groups overlapping ``[start, stop)`` and the file row where the first begins."""
    groups, first_row, row = [], None, 0
    for g in range(parquet.metadata.num_row_groups):
        n = parquet.metadata.row_group(g).num_rows
        if row < stop and row + n > start:
            groups.append(g)
            first_row = row if first_row is None else first_row
        row += n
    return groups, (first_row if first_row is not None else start)


def _record_batches(
    parquet, groups: List[int], first_row: int, stop: int, read_rows: int, columns: List[str]
) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``read_rows`` rows of ``groups`` (whose first row is
    ``first_row``); when ``stop`` falls inside the last group, that group's batches are sized
    so that one ends within a few rows of ``stop``, so the group's rest is (almost) not decoded."""
    last_start = first_row + sum(parquet.metadata.row_group(g).num_rows for g in groups[:-1])
    inside_last = bool(groups) and stop < last_start + parquet.metadata.row_group(groups[-1]).num_rows
    whole = groups[:-1] if inside_last else groups  # groups read to their end
    if whole:
        yield from parquet.iter_batches(batch_size=read_rows, row_groups=whole, columns=columns)
    if inside_last:
        needed = stop - last_start
        pieces = -(-needed // read_rows)
        yield from parquet.iter_batches(
            batch_size=-(-needed // pieces), row_groups=groups[-1:], columns=columns
        )  # pieces x size >= needed


def plan_runs(fragments: Sequence[Fragment], workers: int) -> List[List[Fragment]]:
    """Group ``fragments`` into runs, each decoded in one pass by one worker.

    Consecutive fragments of one file whose boundary lies inside a row group (the pieces of a
    split row group) form a chain; a chain of ``n`` fragments becomes ``min(workers, n)``
    contiguous runs of near-equal length, so the workers share it and the rows decoded only to
    be skipped (those of the group before a run's start) total about ``(workers - 1) / 2`` times
    the group. Every other fragment is a run of its own. Order is kept.

    Args:
        fragments: from :func:`plan_fragments` (or a subset of them, e.g. those left to do).
        workers: the workers that will read the runs (>= 1).

    Raises:
        ValueError: for ``workers < 1``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    opened: dict = {}  # path -> its footer, read once and only where needed

    def inside_a_row_group(path: str, row: int) -> bool:
        if path not in opened:
            opened[path] = open_parquet(path)
        return _row_groups_of(opened[path], row, row + 1)[1] != row  # the group holding ``row`` starts before it

    chains: List[List[Fragment]] = []
    for fragment in fragments:
        last = chains[-1][-1] if chains else None
        if (
            last is not None
            and last.path == fragment.path
            and last.stop == fragment.start
            and last.rows
            and fragment.rows
            and inside_a_row_group(fragment.path, fragment.start)
        ):
            chains[-1].append(fragment)
        else:
            chains.append([fragment])
    runs: List[List[Fragment]] = []
    for chain in chains:
        pieces = min(workers, len(chain))
        cuts = [round(i * len(chain) / pieces) for i in range(pieces + 1)]
        runs.extend(chain[a:b] for a, b in zip(cuts, cuts[1:]))
    return runs


def read_run(run: Sequence[Fragment], columns: List[str], read_rows: int) -> Iterator[tuple[Fragment, int, pa.Table]]:
    """Decode a run's rows in one pass, in tables of at most ``read_rows`` rows, none spanning two fragments.

    Yields:
        ``(fragment, row_base, table)``: the fragment the rows belong to, the file-relative row
        of the table's first row, and the rows. A fragment with no rows yields nothing.

    Raises:
        ValueError: for a run that is empty, spans files, or has gaps.
        DataError: naming the file when it cannot be read or decoded.
    """
    if not run:
        raise ValueError("a run holds at least one fragment")
    if any(f.path != run[0].path or f.start != g.stop for g, f in zip(run, run[1:])):
        raise ValueError(f"a run is contiguous fragments of one file; got {[(f.path, f.start, f.stop) for f in run]}")
    parquet = open_parquet(run[0].path, pre_buffer=False)
    position = 0
    for row_base, table in decode_rows(parquet, run[0].path, columns, run[0].start, run[-1].stop, read_rows):
        while table.num_rows:
            while run[position].stop <= row_base:
                position += 1
            fragment = run[position]
            take = min(table.num_rows, fragment.stop - row_base)
            yield fragment, row_base, table.slice(0, take)
            table, row_base = table.slice(take), row_base + take


def read_fragment(fragment: Fragment, columns: List[str], read_rows: int) -> Iterator[tuple[int, pa.Table]]:
    """Decode ``columns`` of the fragment's rows in tables of at most ``read_rows`` rows.

    Yields:
        ``(row_base, table)``: the file-relative row of the table's first row, and the rows.

    Raises:
        DataError: naming the file when it cannot be read or decoded.
    """
    for _, row_base, table in read_run([fragment], columns, read_rows):
        yield row_base, table


def decode_rows(
    parquet,
    path: str,
    columns: List[str],
    start: int,
    stop: int,
    read_rows: int,
    on_decoded: Optional[Callable[[int], None]] = None,
    stop_inside_group: bool = False,
) -> Iterator[tuple[int, pa.Table]]:
    """Decode ``columns`` of rows ``[start, stop)`` of an opened file, at most ``read_rows`` a table.

    pyarrow decodes the overlapping row groups; on a null ``fixed_size_list`` row, which pyarrow
    before 26 cannot read (apache/arrow GH-35692), polars decodes the rest of the range.

    Args:
        parquet: the file opened with ``open_parquet(path, pre_buffer=False)``.
        on_decoded: called with the rows of every record batch decoded, including rows of a
            row group before ``start`` that had to be decoded to reach it.
        stop_inside_group: when ``stop`` falls inside a row group, read that group in pieces
            that end at ``stop`` (training shares: the group's rest is not decoded). Off, the
            tables follow ``read_rows`` from each group's start whatever ``stop`` is, so a
            range read alone or as part of a longer run yields the same tables (the embed
            job's parts then come out bit-identical when redone).

    Yields:
        ``(row_base, table)``: the file-relative row of the table's first row, and the rows.

    Raises:
        DataError: naming the file when it cannot be decoded.
    """
    if stop <= start:
        return
    groups, row = _row_groups_of(parquet, start, stop)
    done = start  # next file row to yield
    try:
        batches = (
            _record_batches(parquet, groups, row, stop, read_rows, columns)
            if stop_inside_group
            else parquet.iter_batches(batch_size=read_rows, row_groups=groups, columns=columns)
        )
        for record_batch in batches:
            begin, end = row, row + record_batch.num_rows
            row = end
            if on_decoded is not None:
                on_decoded(record_batch.num_rows)
            lo, hi = max(begin, done), min(end, stop)
            if hi > lo:
                yield lo, pa.Table.from_batches([record_batch.slice(lo - begin, hi - lo)])
                done = hi
            if done >= stop:
                return
        return
    except pa.ArrowInvalid as err:
        if "Expected all lists to be of size" not in str(err):
            raise DataError(f"cannot decode Parquet data: {err}", file=path) from None
    try:
        lazy = pl.scan_parquet(path).slice(done, stop - done).select(columns)
        for frame in lazy.collect_batches(chunk_size=read_rows):
            if on_decoded is not None:
                on_decoded(frame.height)
            yield done, frame.to_arrow()
            done += frame.height
    except pl.exceptions.PolarsError as err:
        raise DataError(f"cannot decode Parquet data: {err}".splitlines()[0], file=path) from None
