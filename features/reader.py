"""Streaming Parquet files into model-ready :class:`FeatureBatch` es of a fixed size.

The files (or, sharded, one worker's share of their rows: :mod:`deepsets.features.shards`) are read in
record batches of ``read_rows`` rows (large, so per-call overheads are
paid rarely); each record batch is converted with vectorized Arrow/numpy operations, then cut
into batches of exactly ``batch_size`` rows (the remainder of one file is joined to the start
of the next). Errors name the file and its file-relative rows.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from deepsets.batch import FeatureBatch
from deepsets.features.errors import DataError
from deepsets.features.files import Paths, open_parquet, resolve_inputs
from deepsets.features.fragments import decode_rows
from deepsets.features.kinds.base import ModalityCounts
from deepsets.features.prefetch import prefetch
from deepsets.features.shards import RowRange, epoch_units, shard


class ParquetBatchReader:
    """Iterate over ``FeatureBatch`` es of ``batch_size`` rows from Parquet files.

    Args:
        spec: a fitted ``FeatureSpec`` (applied, never refitted).
        paths: files, directories (their ``*.parquet``) or globs.
        batch_size: rows per batch; the last batch may be smaller unless ``drop_last``.
        label_columns: columns carried as float32 labels.
        key_columns: integer columns carried as int64 ``labels`` (query groups, item ids).
        group_column: with ``shuffle_seed``, shuffle whole groups of this key column instead
            of rows, so a group's rows inside a chunk stay together (for ranking losses; only
            a batch or chunk edge cuts a group).
        read_rows: rows decoded per Parquet read (memory ~ read_rows x row width).
        drop_last: drop a final short batch (it is counted in ``rows_dropped``).
        progress: show a progress bar (rows) on a terminal.
        shuffle_seed: if given, read the row groups of all files in a shuffled order and
            shuffle the rows inside each decoded chunk of ``read_rows`` (a local shuffle;
            memory stays bounded).
        shard: ``(rank, world)``: read only this worker's contiguous share of the (shuffled)
            row sequence (:mod:`deepsets.features.shards`), so N workers decode every row once.
        equal_shards: with ``shard``, every share has ``rows // world`` rows (the rest is
            dropped and counted by rank 0) so every worker takes the same number of batches;
            False: the shares cover every row (validation).

    Attributes:
        counts: modality -> :class:`ModalityCounts` accumulated over everything read so far.
        rows_read: rows read from the files; ``rows_dropped``: rows of a dropped last batch
            (and, with equal shards, rank 0 counts the rows left out of every share).
        rows_decoded: rows Parquet decoding produced (at least ``rows_read``: a share that
            starts inside a row group decodes that row group's earlier rows too).

    Raises:
        DataError: (while iterating) for non-Parquet files, missing columns, wrong types,
            or bad values, naming the file, column and rows.
    """

    def __init__(
        self,
        spec,
        paths: Paths,
        *,
        batch_size: int = 512,
        label_columns: Sequence[str] = (),
        read_rows: int = 4096,
        drop_last: bool = False,
        progress: bool = False,
        desc: str = "reading",
        shuffle_seed: Optional[int] = None,
        key_columns: Sequence[str] = (),
        group_column: Optional[str] = None,
        shard: Optional[Tuple[int, int]] = None,
        equal_shards: bool = True,
    ) -> None:
        if batch_size < 1 or read_rows < 1:
            raise ValueError(f"batch_size and read_rows must be >= 1, got {batch_size} and {read_rows}")
        self.rank, self.world = shard or (0, 1)
        if not 0 <= self.rank < self.world:
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        self.equal_shards = equal_shards
        self.spec = spec
        self.files: List[str] = resolve_inputs(paths)
        self.batch_size = batch_size
        self.label_columns = list(label_columns)
        self.key_columns = [c for c in key_columns if c not in self.label_columns]
        self.read_rows = max(read_rows, batch_size)
        self.drop_last = drop_last
        self.progress = progress
        self.desc = desc
        self.shuffle_seed = shuffle_seed
        self.group_column = group_column
        if group_column and group_column not in self.key_columns + self.label_columns:
            self.key_columns.append(group_column)
        self.counts: Dict[str, ModalityCounts] = {}
        self.rows_read = 0
        self.rows_dropped = 0
        self.rows_decoded = 0

    def _columns(self) -> List[str]:
        cols = self.spec.schema.source_columns()
        return cols + [c for c in self.label_columns + self.key_columns if c not in cols]

    def total_rows(self) -> int:
        """Rows in all files, from Parquet metadata (no data read)."""
        return sum(open_parquet(f).metadata.num_rows for f in self.files)

    def planned_ranges(self) -> Tuple[List[RowRange], int]:
        """This reader's row ranges for one pass (its share when sharded) and the rows left out
        of every share (rank 0 only). The same on every call: the shuffle is seeded."""
        rng = np.random.default_rng(self.shuffle_seed) if self.shuffle_seed is not None else None
        units = epoch_units(self.files, rng)
        if self.world == 1:
            return units, 0
        return shard(units, self.rank, self.world, self.equal_shards)

    def _count_decoded(self, rows: int) -> None:
        self.rows_decoded += rows

    def _decoded(self, ranges: List[RowRange]) -> Iterator[tuple]:
        """(file, file-relative first row, row order or None, Arrow table) for every chunk of every range."""
        columns = self._columns()
        extra = (
            self.label_columns + self.key_columns + ([self.spec.schema.id_column] if self.spec.schema.id_column else [])
        )
        # the in-chunk shuffle draws from its own seeded stream, so a shard's rows do not depend on the others'
        rng = np.random.default_rng([self.shuffle_seed, self.rank]) if self.shuffle_seed is not None else None
        opened_path, parquet = None, None
        for path, start, stop in ranges:
            if path != opened_path:  # a shuffled plan visits files in turn: one open file at a time
                parquet, opened_path = self.spec.open_checked(path, extra, pre_buffer=False), path
            for row_base, table in decode_rows(
                parquet, path, columns, start, stop, self.read_rows, self._count_decoded, stop_inside_group=True
            ):
                order = self._shuffled_order(rng, table) if rng is not None else None
                yield path, row_base, order, table if order is None else table.take(order)

    def _shuffled_order(self, rng: np.random.Generator, table: pa.Table) -> np.ndarray:
        """A random row order; with ``group_column``, a random order of whole groups."""
        if not self.group_column:
            return rng.permutation(table.num_rows)
        _, group = np.unique(
            table.column(self.group_column).to_numpy(zero_copy_only=False), return_inverse=True
        )  # (n,)
        rank = rng.permutation(int(group.max()) + 1 if group.size else 0)  # a random position per group
        return np.argsort(rank[group], kind="stable")  # rows of a group adjacent, in file order

    def _converted(self, ranges: List[RowRange]) -> Iterator[FeatureBatch]:
        for path, row_base, order, table in prefetch(self._decoded(ranges)):
            try:
                batch = self.spec.transform(
                    table, label_columns=self.label_columns, counts=self.counts, key_columns=self.key_columns
                )
            except DataError as err:
                if order is not None and err.rows is not None:  # back to the file's row numbers
                    err = DataError(err.detail, file=err.file, column=err.column, rows=np.sort(order[err.rows]))
                raise err.located(path, row_base) from None
            self.rows_read += table.num_rows
            yield batch

    def __iter__(self) -> Iterator[FeatureBatch]:
        ranges, left_out = self.planned_ranges()
        self.counts, self.rows_read, self.rows_dropped, self.rows_decoded = {}, 0, left_out, 0
        bar = tqdm(
            total=sum(stop - start for _, start, stop in ranges),
            unit="rows",
            desc=self.desc,
            disable=not self.progress or None,
            leave=False,
        )
        pending: List[FeatureBatch] = []
        pending_rows = 0
        try:
            for converted in self._converted(ranges):
                bar.update(converted.num_rows)
                pending.append(converted)
                pending_rows += converted.num_rows
                if pending_rows < self.batch_size:
                    continue
                joined = FeatureBatch.concat(pending)
                full = (joined.num_rows // self.batch_size) * self.batch_size
                for start in range(0, full, self.batch_size):
                    yield joined.slice(start, start + self.batch_size)
                rest = joined.num_rows - full
                pending = [joined.slice(full, joined.num_rows)] if rest else []
                pending_rows = rest
            if pending_rows:
                if self.drop_last:
                    self.rows_dropped += pending_rows
                else:
                    yield FeatureBatch.concat(pending)
        finally:
            bar.close()
        if self.rows_read == 0 and self.world == 1:  # a shard may be empty (fewer rows than workers)
            raise DataError(
                f"input has no rows ({len(self.files)} file(s), all empty)",
                file=self.files[0] if len(self.files) == 1 else None,
            )


def describe_counts(counts: Dict[str, ModalityCounts]) -> Dict[str, dict]:
    """Counters as plain dicts (for JSON summaries)."""
    return {name: c.as_dict() for name, c in sorted(counts.items())}


__all__ = ["ParquetBatchReader", "describe_counts"]
