"""Arrow list helpers: split into validity / lengths / flat values, truncation, float checks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.features.arrow_lists import float_values, split_list, truncate, valid_mask
from deepsets.features.errors import DataError

ROWS = [[1, 2], None, [], [3], None, [4, 5, 6]]


@pytest.mark.parametrize("kind", ["list", "large_list", "list_view", "large_list_view", "sliced_view", "chunked"])
def test_split_list_of_every_flavour(kind):
    arr = {
        "list": pa.array(ROWS, pa.list_(pa.int64())),
        "large_list": pa.array(ROWS, pa.large_list(pa.int64())),
        "list_view": pa.array(ROWS, pa.list_view(pa.int64())),
        "large_list_view": pa.array(ROWS, pa.large_list_view(pa.int64())),
        "sliced_view": pa.array([[9]] + ROWS, pa.list_view(pa.int64())).slice(1),
        "chunked": pa.chunked_array(
            [pa.array(ROWS[:3], pa.list_(pa.int64())), pa.array(ROWS[3:], pa.list_(pa.int64()))]
        ),
    }[kind]
    parts = split_list(arr)
    assert parts.valid.tolist() == [True, False, True, True, False, True]
    assert parts.lengths.tolist() == [2, 0, 0, 1, 0, 3]
    assert parts.flat.to_pylist() == [1, 2, 3, 4, 5, 6]
    assert parts.row_of_element().tolist() == [0, 0, 3, 5, 5, 5]
    assert parts.offsets().tolist() == [0, 2, 2, 2, 3, 3, 6]


def test_split_list_honours_slices_and_fixed_size_lists():
    sliced = pa.array(ROWS, pa.list_(pa.int64())).slice(3, 3)  # [3], None, [4, 5, 6]
    parts = split_list(sliced)
    assert parts.lengths.tolist() == [1, 0, 3] and parts.flat.to_pylist() == [3, 4, 5, 6]
    fixed = pa.array([[1.0, 2.0], None, [3.0, 4.0]], pa.list_(pa.float32(), 2))
    parts = split_list(fixed)
    assert parts.valid.tolist() == [True, False, True] and parts.lengths.tolist() == [2, 0, 2]
    assert parts.flat.to_pylist() == [1.0, 2.0, 3.0, 4.0]


def test_valid_mask():
    assert valid_mask(pa.array([1, None, 3])).tolist() == [True, False, True]
    assert valid_mask(pa.array([1, 2])).tolist() == [True, True]


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 9), max_size=12),
    max_len=st.one_of(st.none(), st.integers(1, 6)),
    keep_last=st.booleans(),
)
def test_truncate_keeps_the_first_or_last_elements_of_each_row(lengths, max_len, keep_last):
    lengths = np.array(lengths, dtype=np.int64)
    cut = truncate(lengths, max_len, keep_last)
    expected, start = [], 0
    for n in lengths.tolist():
        row = list(range(start, start + n))
        start += n
        expected += row if max_len is None or n <= max_len else (row[-max_len:] if keep_last else row[:max_len])
    assert cut.keep.tolist() == expected
    cap = lengths if max_len is None else np.minimum(lengths, max_len)
    assert cut.lengths.tolist() == cap.tolist()
    assert cut.truncated_rows == int((lengths > cap).sum()) and cut.dropped_elements == int((lengths - cap).sum())


def test_float_values_converts_and_names_the_rows_of_bad_elements():
    ok = pa.array([[1, 2], None, [3]], pa.list_(pa.int32()))
    parts = split_list(ok)
    values = float_values(parts.flat, parts, "v", "vector")
    assert values.dtype == np.float32 and values.tolist() == [1.0, 2.0, 3.0]
    for rows, found in (([[1.0], [2.0, float("nan")]], "NaN"), ([[float("inf")], [2.0]], "infinite value")):
        parts = split_list(pa.array(rows, pa.list_(pa.float64())))
        with pytest.raises(DataError, match=rf"column 'v', row {1 if found == 'NaN' else 0}: {found} inside a vector"):
            float_values(parts.flat, parts, "v", "vector")
    parts = split_list(pa.array([[1.0], [None, 2.0], [None]], pa.list_(pa.float64())))
    with pytest.raises(DataError, match=r"column 'v', rows 1..2 \(2 rows\): null element inside a vector"):
        float_values(parts.flat, parts, "v", "vector")
    parts = split_list(pa.array([["a"]], pa.list_(pa.string())))
    with pytest.raises(DataError, match="expected vector of floats, found elements of type string"):
        float_values(parts.flat, parts, "v", "vector")
