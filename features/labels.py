"""Label columns to float32 tensors: a scalar column -> (B,), a list column -> (B, K); key
columns (query groups, item ids) to int64 tensors (B,)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from deepsets.features.arrow_lists import is_list_type, split_list, valid_mask
from deepsets.features.errors import DataError


def label_tensor(arr: pa.Array | pa.ChunkedArray, column: str) -> torch.Tensor:
    """Convert one label column.

    Raises:
        DataError: for nulls, NaN, non-numeric types or ragged label lists.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if is_list_type(t):
        parts = split_list(arr)
        k = int(parts.lengths.max(initial=0))
        ragged = ~parts.valid | (parts.lengths != k)
        if ragged.any():
            raise DataError(
                f"label lists must all hold {k} numbers (no nulls)", column=column, rows=np.nonzero(ragged)[0]
            )
        values = _numeric(parts.flat, column, parts.row_of_element()).reshape(-1, k)  # (B, K)
    else:
        values = _numeric(arr, column, np.arange(len(arr)))  # (B,)
    return torch.from_numpy(np.array(values, dtype=np.float32, copy=True))


def _numeric(arr: pa.Array, column: str, row_of: np.ndarray) -> np.ndarray:
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type)):
        raise DataError(f"labels must be numeric, found {arr.type}", column=column)
    null = ~valid_mask(arr)
    values = arr.cast(pa.float32()).to_numpy(zero_copy_only=False)  # nulls come out as NaN
    not_finite = ~null & ~np.isfinite(values)
    if null.any() and not_finite.any():  # both kinds, each counted, so fixing one does not reveal the other later
        nulls, others = len(np.unique(row_of[null])), len(np.unique(row_of[not_finite]))
        raise DataError(
            f"null label in {nulls} row(s) and NaN or infinite label in {others} row(s) (every labelled row needs a finite value)",
            column=column,
            rows=np.unique(row_of[null | not_finite]),
        )
    if null.any():
        raise DataError("null label (every labelled row needs a value)", column=column, rows=np.unique(row_of[null]))
    if not_finite.any():
        raise DataError("NaN or infinite label", column=column, rows=np.unique(row_of[not_finite]))
    return values


def key_tensor(arr: pa.Array | pa.ChunkedArray, column: str) -> torch.Tensor:
    """An integer key column (a query group or an item id) -> int64 (B,), exactly (no float
    rounding, so ids beyond 2^24 stay distinct).

    Raises:
        DataError: for nulls or a non-integer type.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_integer(arr.type):
        raise DataError(f"must hold integer ids (a query group or item id), found {arr.type}", column=column)
    ok = valid_mask(arr)
    if not ok.all():
        raise DataError("null id (every row needs one)", column=column, rows=np.nonzero(~ok)[0])
    return torch.from_numpy(np.array(arr.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64, copy=True))
