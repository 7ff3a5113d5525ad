"""One streaming pass of statistics over a table's Parquet files: what ``deepsets init`` decides from.

Each file is read in record batches (never the whole table); per column it keeps counts, value
ranges, list lengths and the distinct values (as 64-bit hashes, compacted as they come, so the
memory is 8 bytes per distinct value; the values themselves with their counts while there are at
most :data:`COUNT_CAP` of them). The first :data:`SAMPLE_ROWS` rows of the scalar columns are kept
for the leak checks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm.auto import tqdm

from deepsets.features.arrow_lists import is_list_type, split_list
from deepsets.features.errors import DataError
from deepsets.features.files import open_parquet
from deepsets.features.ids import id_type_of

COUNT_CAP = 200_000  # value counts are kept while a column has at most this many distinct values
SAMPLE_ROWS = 100_000  # rows of the scalar columns kept for the leak checks
BATCH_ROWS = 65_536
PROGRESS_ROWS = 200_000  # a progress bar from this many rows on
EXAMPLES = 3  # example rows kept per inner vector length

SHAPES = ("ids", "number", "float_list", "vector_list", "id_list", "other")
"""``ids``: int or string scalars; ``number``: float or bool scalars; ``float_list``: a list of
floats; ``vector_list``: a list of lists of floats; ``id_list``: a list of ints or strings."""


def shape_of(t: pa.DataType) -> str:
    """Which of :data:`SHAPES` an Arrow type is."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if id_type_of(t) is not None:
        return "ids"
    if pa.types.is_floating(t) or pa.types.is_boolean(t):
        return "number"
    if is_list_type(t):
        inner = t.value_type
        if pa.types.is_floating(inner):
            return "float_list"
        if is_list_type(inner) and (pa.types.is_floating(inner.value_type) or pa.types.is_integer(inner.value_type)):
            return "vector_list"
        if id_type_of(inner) is not None:
            return "id_list"
    return "other"


class DistinctValues:
    """The distinct values seen: exactly counted through 64-bit hashes, with their counts while
    there are at most ``cap`` (``counts`` is None beyond)."""

    def __init__(self, cap: Optional[int] = None) -> None:
        self.cap = COUNT_CAP if cap is None else cap
        self._hashes = pl.Series("h", [], dtype=pl.UInt64)
        self._pending: List[pl.Series] = []
        self._pending_size = 0
        self._count_parts: List[pl.DataFrame] = []
        self._too_many = False
        self._counts: Optional[Dict] = None

    def add(self, values: pl.Series) -> None:
        """Count a batch of values (nulls already dropped)."""
        if values.len() == 0:
            return
        found = pl.DataFrame({"value": values}).group_by("value").agg(pl.len().cast(pl.Int64).alias("n"))
        self._pending.append(found["value"].hash(seed=0))
        self._pending_size += found.height
        if not self._too_many:
            self._count_parts.append(found)
        self._counts = None
        if self._pending_size > max(1 << 16, self._hashes.len()):
            self._compact()

    def _compact(self) -> None:
        self._hashes = pl.concat([self._hashes, *self._pending]).unique()
        self._pending, self._pending_size = [], 0
        if not self._too_many and self._count_parts:
            merged = pl.concat(self._count_parts).group_by("value").agg(pl.col("n").sum())
            self._too_many = merged.height > self.cap
            self._count_parts = [] if self._too_many else [merged]

    def hashes(self) -> pl.Series:
        """The hash of every distinct value."""
        if self._pending:
            self._compact()
        return self._hashes

    @property
    def counts(self) -> Optional[Dict]:
        """``{value: rows}``, or None when there are more than ``cap`` distinct values."""
        self.hashes()
        if self._too_many:
            return None
        if self._counts is None:
            merged = self._count_parts[0] if self._count_parts else pl.DataFrame({"value": [], "n": []})
            self._counts = dict(zip(merged["value"].to_list(), merged["n"].to_list()))
        return self._counts

    @property
    def count(self) -> int:
        return self.hashes().len()


@dataclass
class ColumnProfile:
    """What one pass learned about one column (``missing``: null rows, empty lists, NaN numbers)."""

    name: str
    arrow_type: pa.DataType
    shape: str
    rows: int = 0
    missing: int = 0
    low: Optional[float] = None  # smallest finite value (scalars) or id (id lists)
    high: Optional[float] = None
    distinct: Optional[DistinctValues] = None  # ids, id lists' elements, and the label
    lengths: Counter = field(default_factory=Counter)  # list kinds: present rows by length
    repeat_rows: int = 0  # id lists: rows holding an id twice
    inner_lengths: Counter = field(default_factory=Counter)  # vector lists: vectors by length (None: null vector)
    inner_examples: Dict[Optional[int], List[Tuple[str, int]]] = field(default_factory=dict)  # length -> [(file, row)]
    bad_rows: int = 0  # rows training refuses: NaN, infinite or null floats in a vector, an infinite number
    bad_examples: List[Tuple[str, int]] = field(default_factory=list)  # [(file, row)]

    def note_bad(self, rows: np.ndarray, path: str) -> None:
        """Count the rows (file rows, unique) holding values training refuses; keep a few."""
        self.bad_rows += int(rows.size)
        self.bad_examples.extend((path, int(r)) for r in rows[: max(0, EXAMPLES - len(self.bad_examples))])

    @property
    def present(self) -> int:
        return self.rows - self.missing

    def widen(self, low: Optional[float], high: Optional[float]) -> None:
        if low is not None:
            self.low = low if self.low is None else min(self.low, low)
        if high is not None:
            self.high = high if self.high is None else max(self.high, high)


@dataclass
class TableProfile:
    """Every column's profile, the rows read and the first rows of the scalar columns."""

    files: List[str]
    rows: int
    columns: Dict[str, ColumnProfile]
    sample: pa.Table


def values_of(arr: pa.Array) -> pl.Series:
    """A column's values as polars sees them, dictionaries decoded and ids widened (Int64,
    String), so one value hashes alike in every file."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    s = pl.from_arrow(arr)
    if s.dtype.is_integer():
        return s.cast(pl.Int64)
    return s.cast(pl.String) if s.dtype == pl.String or pa.types.is_large_string(arr.type) else s


def _bad_floats(flat: pa.Array) -> np.ndarray:
    """(N,) True where a float element is null, NaN or infinite."""
    values = flat.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls come out as NaN
    return ~np.isfinite(values)


def _add_scalar(p: ColumnProfile, arr: pa.Array, path: str, row_base: int) -> None:
    s = values_of(arr)
    if p.shape == "number":
        s = s.cast(pl.Float64)
        p.missing += s.null_count() + int(s.is_nan().sum())
        p.note_bad(np.nonzero(s.is_infinite().fill_null(False).to_numpy())[0] + row_base, path)
        s = s.drop_nulls().drop_nans()
        s = s.filter(s.is_finite())
    else:
        p.missing += s.null_count()
        s = s.drop_nulls()
    if s.dtype.is_numeric() and s.len():
        p.widen(float(s.min()), float(s.max()))
    if p.distinct is not None:
        p.distinct.add(s)


def _lengths(p: ColumnProfile, arr: pa.Array):
    parts = split_list(arr)
    present = parts.valid & (parts.lengths > 0)  # (B,)
    p.missing += int((~present).sum())
    found, counts = np.unique(parts.lengths[present], return_counts=True)
    p.lengths.update(dict(zip(found.tolist(), counts.tolist())))
    return parts


def _add_id_list(p: ColumnProfile, arr: pa.Array) -> None:
    if pa.types.is_fixed_size_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_type))
    parts = _lengths(p, arr)
    ids = values_of(parts.flat).drop_nulls()
    if ids.dtype.is_numeric() and ids.len():
        p.widen(float(ids.min()), float(ids.max()))
    p.distinct.add(ids)
    lists = pl.from_arrow(arr)
    p.repeat_rows += int((lists.list.n_unique() < lists.list.len()).sum())


def _add_float_list(p: ColumnProfile, arr: pa.Array, path: str, row_base: int) -> None:
    parts = _lengths(p, arr)
    bad = _bad_floats(parts.flat)  # (N,)
    if bad.any():
        p.note_bad(np.unique(parts.row_of_element()[bad]) + row_base, path)


def _add_vector_list(p: ColumnProfile, arr: pa.Array, path: str, row_base: int) -> None:
    outer = _lengths(p, arr)
    inner = split_list(outer.flat)
    bad = _bad_floats(inner.flat)  # (N,)
    if bad.any():
        p.note_bad(np.unique(outer.row_of_element()[inner.row_of_element()[bad]]) + row_base, path)
    keys = np.where(inner.valid, inner.lengths, -1)  # (V,), -1 = a null vector
    rows = outer.row_of_element() + row_base  # (V,) the file row of each vector
    found, counts = np.unique(keys, return_counts=True)
    for key, n in zip(found.tolist(), counts.tolist()):
        length = None if key < 0 else key
        p.inner_lengths[length] += n
        examples = p.inner_examples.setdefault(length, [])
        if len(examples) < EXAMPLES:
            picked = np.unique(rows[keys == key])[: EXAMPLES - len(examples)]
            examples.extend((path, int(r)) for r in picked)


def _add(p: ColumnProfile, arr: pa.Array, path: str, row_base: int) -> None:
    p.rows += len(arr)
    if p.shape in ("ids", "number"):
        _add_scalar(p, arr, path, row_base)
    elif p.shape == "float_list":
        _add_float_list(p, arr, path, row_base)
    elif p.shape == "id_list":
        _add_id_list(p, arr)
    elif p.shape == "vector_list":
        _add_vector_list(p, arr, path, row_base)
    else:
        p.missing += arr.null_count


def _columns_of(path: str, arrow_schema: pa.Schema, wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in arrow_schema.names]
    if missing:
        raise DataError(
            f"column(s) {', '.join(missing)} missing: every input file needs the first file's columns "
            f"(this one has: {', '.join(arrow_schema.names)})",
            file=path,
        )


def profile_table(
    files: Sequence[str],
    label: Optional[str] = None,
    columns: Optional[Sequence[str]] = None,
    progress: bool = False,
    desc: str = "profiling",
) -> TableProfile:
    """Read ``files`` once, batch by batch, and profile each column.

    Args:
        files: Parquet files (already resolved), read in this order.
        label: a column whose distinct values are counted whatever its type (the task is guessed from them).
        columns: the columns to profile (default: every column of the first file).
        progress: show a progress bar when the files hold at least :data:`PROGRESS_ROWS` rows.
        desc: the progress bar's label.

    Raises:
        DataError: naming the file that lacks a column of the first file.
    """
    first = open_parquet(files[0]).schema_arrow
    names = list(columns) if columns is not None else list(first.names)
    _columns_of(files[0], first, names)
    profiles = {c: ColumnProfile(c, first.field(c).type, shape_of(first.field(c).type)) for c in names}
    for p in profiles.values():
        if p.shape in ("ids", "id_list") or p.name == label:
            p.distinct = DistinctValues()
    scalars = [c for c in names if profiles[c].shape in ("ids", "number")]
    opened = [open_parquet(f) for f in files]
    total = sum(pf.metadata.num_rows for pf in opened)
    sample: List[pa.Table] = []
    kept = 0
    with tqdm(
        total=total,
        unit="rows",
        unit_scale=True,
        desc=desc,
        leave=False,
        disable=None if progress and total >= PROGRESS_ROWS else True,
    ) as bar:
        for path, pf in zip(files, opened):
            _columns_of(path, pf.schema_arrow, names)
            row_base = 0
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=names):
                for c in names:
                    _add(profiles[c], batch.column(c), path, row_base)
                if kept < SAMPLE_ROWS and scalars:
                    piece = pa.Table.from_batches([batch.select(scalars)]).slice(0, SAMPLE_ROWS - kept)
                    sample.append(piece)
                    kept += piece.num_rows
                row_base += batch.num_rows
                bar.update(batch.num_rows)
    table = pa.concat_tables(sample, promote_options="permissive") if sample else pa.table({})
    return TableProfile(files=list(files), rows=total, columns=profiles, sample=table)


@dataclass
class Unseen:
    """Validation rows of one column holding a value training never had (``present`` rows with a value)."""

    present: int = 0
    unseen: int = 0

    @property
    def share(self) -> float:
        return self.unseen / self.present if self.present else 0.0


def unseen_in_valid(
    files: Sequence[str], train: TableProfile, columns: Mapping[str, str], progress: bool = False
) -> Dict[str, Unseen]:
    """One pass over the validation files: per column, the rows whose value training never saw
    (a category not among training's, or a number outside training's range).

    Args:
        files: the validation Parquet files.
        train: the training profile (its distinct values and ranges).
        columns: scalar columns of ``train`` to check, each with its kind: ``categorical``
            (values are checked) or ``numeric`` (the range is).
        progress: show a progress bar on large inputs.

    Raises:
        DataError: naming a validation file without one of the columns.
    """
    found = {c: Unseen() for c in columns}
    if not columns:
        return found
    opened = [open_parquet(f) for f in files]
    total = sum(pf.metadata.num_rows for pf in opened)
    with tqdm(
        total=total,
        unit="rows",
        unit_scale=True,
        desc="validation",
        leave=False,
        disable=None if progress and total >= PROGRESS_ROWS else True,
    ) as bar:
        for path, pf in zip(files, opened):
            _columns_of(path, pf.schema_arrow, columns)
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=list(columns)):
                for c in columns:
                    p, counted = train.columns[c], found[c]
                    s = values_of(batch.column(c)).drop_nulls()
                    if columns[c] == "numeric" or p.distinct is None:
                        s = s.cast(pl.Float64).drop_nans()
                        low, high = (p.low, p.high) if p.low is not None else (np.inf, -np.inf)
                        counted.unseen += int(((s < low) | (s > high)).sum())
                    else:
                        counted.unseen += int((~s.hash(seed=0).is_in(p.distinct.hashes().implode())).sum())
                    counted.present += s.len()
                bar.update(batch.num_rows)
    return found
