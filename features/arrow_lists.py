"""Vectorized helpers over Arrow list arrays: lengths, flat values, truncation, float checks.

Everything here works on whole arrays with numpy; nothing loops over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from deepsets.features.errors import DataError


@dataclass
class ListParts:
    """A list column split into ``valid`` (B,), ``lengths`` (B,) and ``flat`` values (N,).

    ``lengths`` is 0 for null rows and ``flat`` holds only the elements of valid rows, so
    ``row_of_element = np.repeat(np.arange(B), lengths)``.
    """

    valid: np.ndarray
    lengths: np.ndarray
    flat: pa.Array

    def row_of_element(self) -> np.ndarray:
        return np.repeat(np.arange(self.lengths.size, dtype=np.int64), self.lengths)

    def offsets(self) -> np.ndarray:
        out = np.zeros(self.lengths.size + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=out[1:])
        return out


def is_list_view(t: pa.DataType) -> bool:
    return pa.types.is_list_view(t) or pa.types.is_large_list_view(t)


def is_list_type(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or is_list_view(t)


def split_list(arr: pa.Array | pa.ChunkedArray) -> ListParts:
    """Split a (large / fixed-size / view) list array into validity, lengths and flat values."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if is_list_view(arr.type):
        return _split_list_view(arr)
    valid = _valid_mask(arr)
    if isinstance(arr, pa.FixedSizeListArray):
        lengths = np.where(valid, arr.type.list_size, 0).astype(np.int64)  # (B,)
    else:
        lengths = np.diff(arr.offsets.to_numpy()).astype(np.int64)  # (B,); offsets honour slicing
        lengths[~valid] = 0  # a null row may be backed by values; flatten() skips them too
    return ListParts(valid=valid, lengths=lengths, flat=arr.flatten())


def _split_list_view(arr: pa.Array) -> ListParts:
    """List views gather their rows from anywhere in ``values`` (offsets + sizes). Gathered
    here rather than cast to a list: pyarrow 25 casts a list view with null rows wrongly
    (its flat values come out empty)."""
    valid = _valid_mask(arr)
    sizes = np.where(valid, arr.sizes.fill_null(0).to_numpy(zero_copy_only=False), 0).astype(np.int64)  # (B,)
    starts = np.where(valid, arr.offsets.fill_null(0).to_numpy(zero_copy_only=False), 0).astype(np.int64)  # (B,)
    first = np.zeros(sizes.size, dtype=np.int64)
    np.cumsum(sizes[:-1], out=first[1:])  # (B,) where each row starts in the flat values
    within = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(first, sizes)  # (N,)
    index = np.repeat(starts, sizes) + within  # (N,) positions in arr.values
    return ListParts(valid=valid, lengths=sizes, flat=arr.values.take(pa.array(index)))


def _valid_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return arr.is_valid().to_numpy(zero_copy_only=False)


def valid_mask(arr: pa.Array) -> np.ndarray:
    """(B,) bool: True where the value is not null."""
    return _valid_mask(arr)


def element_rows_with(mask: np.ndarray, parts: ListParts) -> np.ndarray:
    """Row numbers (sorted, unique) that own at least one element where ``mask`` is True."""
    return np.unique(parts.row_of_element()[mask])


def float_values(flat: pa.Array, parts: ListParts, column: str, what: str) -> np.ndarray:
    """Flat float32 values; nulls or NaN/inf inside a vector are errors naming the rows.

    Raises:
        DataError: for null, NaN or infinite elements.
    """
    if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)):
        raise DataError(f"expected {what} of floats, found elements of type {flat.type}", column=column)
    if flat.null_count:
        rows = element_rows_with(~_valid_mask(flat), parts)
        raise DataError(f"null element inside a {what} (expected only finite floats)", column=column, rows=rows)
    values = flat.to_numpy(zero_copy_only=False)
    if values.dtype != np.float32:
        values = values.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        nan = np.isnan(values)
        bad, found = (nan, "NaN") if nan.any() else (~finite, "infinite value")
        rows = element_rows_with(bad, parts)
        raise DataError(f"{found} inside a {what} (expected only finite floats)", column=column, rows=rows)
    return values


@dataclass
class Truncation:
    """Which flat elements survive truncation to ``max_len``, and what was cut."""

    keep: np.ndarray  # (N',) int64 indices into the flat values
    lengths: np.ndarray  # (B,) int64 lengths after truncation
    truncated_rows: int
    dropped_elements: int


def truncate(lengths: np.ndarray, max_len: int | None, keep_last: bool) -> Truncation:
    """Indices of the elements kept when each row is cut to ``max_len`` elements.

    Args:
        lengths: (B,) element count per row.
        max_len: the cap; None keeps everything.
        keep_last: keep the last ``max_len`` elements of a row (else the first).
    """
    total = int(lengths.sum())
    if max_len is None or lengths.size == 0 or int(lengths.max(initial=0)) <= max_len:
        return Truncation(np.arange(total, dtype=np.int64), lengths, 0, 0)
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    new_lengths = np.minimum(lengths, max_len)
    first = starts + (lengths - new_lengths) if keep_last else starts  # (B,) first kept element
    new_starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(new_lengths[:-1], out=new_starts[1:])
    n_kept = int(new_lengths.sum())
    within = np.arange(n_kept, dtype=np.int64) - np.repeat(new_starts, new_lengths)
    keep = np.repeat(first, new_lengths) + within
    over = lengths > max_len
    return Truncation(keep, new_lengths, int(over.sum()), int((lengths - new_lengths).sum()))
