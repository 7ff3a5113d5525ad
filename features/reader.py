"""Streaming Parquet files into model-ready :class:`FeatureBatch` es of a fixed size.

Each file is read in record batches of ``read_rows`` rows (large, so per-call overheads are
paid rarely); each record batch is converted with vectorized Arrow/numpy operations, then cut
into batches of exactly ``batch_size`` rows (the remainder of one file is joined to the start
of the next). Errors name the file and its file-relative rows.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from deepsets.batch import FeatureBatch
from features.errors import DataError
from features.files import Paths, open_parquet, resolve_inputs
from features.fragments import decode_rows
from features.kinds.base import ModalityCounts
from features.prefetch import prefetch


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
        shuffle_seed: if given, read the files in a shuffled order and shuffle the rows inside
            each decoded chunk of ``read_rows`` (a local shuffle; memory stays bounded).

    Attributes:
        counts: modality -> :class:`ModalityCounts` accumulated over everything read so far.
        rows_read: rows read from the files; ``rows_dropped``: rows of a dropped last batch.

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
    ) -> None:
        if batch_size < 1 or read_rows < 1:
            raise ValueError(f"batch_size and read_rows must be >= 1, got {batch_size} and {read_rows}")
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

    def _columns(self) -> List[str]:
        cols = self.spec.schema.source_columns()
        return cols + [c for c in self.label_columns + self.key_columns if c not in cols]

    def total_rows(self) -> int:
        """Rows in all files, from Parquet metadata (no data read)."""
        return sum(open_parquet(f).metadata.num_rows for f in self.files)

    def _decoded(self) -> Iterator[tuple]:
        """(file, file-relative first row, Arrow table) for every chunk of every file."""
        columns = self._columns()
        extra = self.label_columns + self.key_columns + ([self.spec.schema.id_column] if self.spec.schema.id_column else [])
        rng = np.random.default_rng(self.shuffle_seed) if self.shuffle_seed is not None else None
        files = [self.files[i] for i in rng.permutation(len(self.files))] if rng is not None else self.files
        for path in files:
            parquet = self.spec.open_checked(path, extra, pre_buffer=False)
            row_base = 0
            for table in decode_batches(path, columns, self.read_rows, parquet):
                order = self._shuffled_order(rng, table) if rng is not None else None
                yield path, row_base, order, table if order is None else table.take(order)
                row_base += table.num_rows

    def _shuffled_order(self, rng: np.random.Generator, table: pa.Table) -> np.ndarray:
        """A random row order; with ``group_column``, a random order of whole groups."""
        if not self.group_column:
            return rng.permutation(table.num_rows)
        _, group = np.unique(table.column(self.group_column).to_numpy(zero_copy_only=False), return_inverse=True)  # (n,)
        rank = rng.permutation(int(group.max()) + 1 if group.size else 0)  # a random position per group
        return np.argsort(rank[group], kind="stable")  # rows of a group adjacent, in file order

    def _converted(self) -> Iterator[FeatureBatch]:
        for path, row_base, order, table in prefetch(self._decoded()):
            try:
                batch = self.spec.transform(table, label_columns=self.label_columns, counts=self.counts, key_columns=self.key_columns)
            except DataError as err:
                if order is not None and err.rows is not None:  # back to the file's row numbers
                    err = DataError(err.detail, file=err.file, column=err.column, rows=np.sort(order[err.rows]))
                raise err.located(path, row_base) from None
            self.rows_read += table.num_rows
            yield batch

    def __iter__(self) -> Iterator[FeatureBatch]:
        self.counts, self.rows_read, self.rows_dropped = {}, 0, 0
        bar = tqdm(total=self.total_rows(), unit="rows", desc=self.desc, disable=not self.progress or None, leave=False)
        pending: List[FeatureBatch] = []
        pending_rows = 0
        try:
            for converted in self._converted():
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
                    self.rows_dropped = pending_rows
                else:
                    yield FeatureBatch.concat(pending)
        finally:
            bar.close()
        if self.rows_read == 0:
            raise DataError(f"input has no rows ({len(self.files)} file(s), all empty)", file=self.files[0] if len(self.files) == 1 else None)


def decode_batches(path: str, columns: List[str], read_rows: int, parquet=None) -> Iterator[pa.Table]:
    """Decode ``columns`` of one whole Parquet file into Arrow tables of at most ``read_rows``
    rows (:func:`features.fragments.decode_rows` over every row, with its polars fallback).

    Args:
        parquet: the file already opened (with ``pre_buffer=False``), to avoid opening it twice.

    Raises:
        DataError: naming the file when it cannot be decoded.
    """
    parquet = parquet or open_parquet(path, pre_buffer=False)
    for _, table in decode_rows(parquet, path, columns, 0, parquet.metadata.num_rows, read_rows):
        yield table


def describe_counts(counts: Dict[str, ModalityCounts]) -> Dict[str, dict]:
    """Counters as plain dicts (for JSON summaries)."""
    return {name: c.as_dict() for name, c in sorted(counts.items())}


__all__ = ["ParquetBatchReader", "describe_counts"]
