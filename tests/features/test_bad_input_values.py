"""Bad columns and values end in one message a user can act on: the file, the column, the
file-relative 0-based rows, and what was expected versus found (``tests/features/bad_input.py``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from tests.features.bad_input import (
    CATEGORICAL,
    DENSE,
    DENSE_SEQ,
    F32,
    ID_SEQ,
    ID_SET,
    INF,
    NAN,
    NUMERIC,
    cli_error,
    fit_fails,
    fitted_spec,
    location,
    reader_error,
    write_parquet,
    write_schema,
)

# --- columns and types --------------------------------------------------------------------

TYPE_CASES = {
    "missing column": (DENSE, {"other": [1, 2]}, "img", ["column missing for modality 'img'", "file has: other"]),
    "missing one numeric column": (
        NUMERIC,
        {"age": [1.0, 2.0], "salary": [3.0, 4.0]},
        "income",
        ["column missing for modality 'profile'", "age, salary"],
    ),
    "dense given list<string>": (
        DENSE,
        {"img": pa.array([["a", "b", "c"]], pa.list_(pa.string()))},
        "img",
        ["(dense) expects list<float> or fixed_size_list<float, 3>", "found list<element: string>"],
    ),
    "dense given fixed_size_list of the wrong size": (
        DENSE,
        {"img": pa.array([[1.0, 2.0]], pa.list_(pa.float32(), 2))},
        "img",
        ["fixed_size_list<float, 3>", "found fixed_size_list<element: float>[2]"],
    ),
    "dense given a scalar": (DENSE, {"img": pa.array([1.0, 2.0])}, "img", ["expects list<float>", "found double"]),
    "categorical given list<int>": (
        CATEGORICAL,
        {"country": pa.array([[1], [2]], pa.list_(pa.int64()))},
        "country",
        ["(categorical) expects an int or string scalar", "found list<element: int64>"],
    ),
    "id_sequence given list<float>": (
        ID_SEQ,
        {"history": pa.array([[1.5]], F32)},
        "history",
        ["expects list<int> or list<string>", "found list<element: float>"],
    ),
    "numeric given strings": (
        NUMERIC,
        {"age": pa.array(["1"]), "income": pa.array([1.0])},
        "age",
        ["(numeric) expects a numeric scalar", "found string"],
    ),
    "dense_sequence given vectors of the wrong fixed size": (
        DENSE_SEQ,
        {"frames": pa.array([[[1.0, 2.0, 3.0]]], pa.list_(pa.list_(pa.float32(), 3)))},
        "frames",
        ["fixed_size_list<float, 2>", "found list<element: fixed_size_list<element: float>[3]>"],
    ),
}


@pytest.mark.parametrize("schema, columns, column, details", TYPE_CASES.values(), ids=TYPE_CASES.keys())
def test_missing_column_or_wrong_type(tmp_path, capsys, schema, columns, column, details):
    bad = write_parquet(tmp_path / "bad.parquet", columns)
    err = fit_fails(tmp_path, capsys, schema, [bad])
    assert str(err).startswith(location(bad, column)), str(err)
    for detail in details:
        assert detail in str(err), (detail, str(err))
    assert (err.file, err.column) == (bad, column)


# --- bad values: row numbers relative to the bad file --------------------------------------

VALUE_CASES = {
    "dense vector of the wrong length": (
        DENSE,
        {"img": pa.array([[1, 2, 3], None, [1, 2], [1, 2, 3], [], [4, 5]], F32)},
        "img",
        "rows 2..5 (2 rows)",
        [2, 5],
        "expected 3 floats per vector, found 2",
    ),
    "NaN inside a dense vector": (
        DENSE,
        {"img": pa.array([[1, 2, 3], None, [1, 2, 3], [1, NAN, 3]], F32)},
        "img",
        "row 3",
        [3],
        "NaN inside a dense vector (expected only finite floats)",
    ),
    "inf inside a fixed-size dense vector": (
        DENSE,
        {"img": pa.array([[1, 2, 3], None, [-INF, 2, 3], [1, 2, 3]], pa.list_(pa.float32(), 3))},
        "img",
        "row 2",
        [2],
        "infinite value inside a dense vector (expected only finite floats)",
    ),
    "null element inside a dense vector": (
        DENSE,
        {"img": pa.array([[1, 2, 3], [1, 2, 3], None, [1, None, 3], [1, 2, 3]], pa.list_(pa.float64()))},
        "img",
        "row 3",
        [3],
        "null element inside a dense vector (expected only finite floats)",
    ),
    "dense_sequence vector of the wrong dim": (
        DENSE_SEQ,
        {"frames": pa.array([[[1, 2]], None, [], [[1, 2], [3, 4, 5]]], pa.list_(F32))},
        "frames",
        "row 3",
        [3],
        "expected every vector to hold 2 floats, found 3 floats",
    ),
    "NaN inside a dense_sequence vector": (
        DENSE_SEQ,
        {"frames": pa.array([[[1, 2]], [[1, 2], [NAN, 4]]], pa.list_(F32))},
        "frames",
        "row 1",
        [1],
        "NaN inside a vector of a sequence (expected only finite floats)",
    ),
    "negative id in an id_sequence": (
        ID_SEQ,
        {"history": pa.array([[1, 2], None, [], [4, -5, 6], [7]], pa.list_(pa.int64()))},
        "history",
        "row 3",
        [3],
        "negative integer id (expected ids >= 0)",
    ),
    "negative categorical": (
        CATEGORICAL,
        {"country": pa.array([1, None, 2, -1, None, -7], pa.int32())},
        "country",
        "rows 3..5 (2 rows)",
        [3, 5],
        "negative integer id (expected ids >= 0)",
    ),
    "null id inside an id_set": (
        ID_SET,
        {"tags": pa.array([[1, 2], None, [3, None], [4]], pa.list_(pa.int64()))},
        "tags",
        "row 2",
        [2],
        "null id (expected an int or string id)",
    ),
    "null string id inside an id_set": (
        ID_SET,
        {"tags": pa.array([["a"], [], ["b", "c"], [None]], pa.list_(pa.string()))},
        "tags",
        "row 3",
        [3],
        "null id (expected an int or string id)",
    ),
    "infinite numeric value": (
        NUMERIC,
        {"age": [1.0, NAN, None, 4.0], "income": [1.0, 2.0, 3.0, -INF]},
        "income",
        "row 3",
        [3],
        "infinite value (expected a finite number, or null/NaN for missing)",
    ),
}


@pytest.mark.parametrize(
    "schema, columns, column, rows_text, rows, detail", VALUE_CASES.values(), ids=VALUE_CASES.keys()
)
def test_bad_value_names_file_column_rows(tmp_path, capsys, schema, columns, column, rows_text, rows, detail):
    table = pa.table(columns)
    # A good first file (the bad table's good first row) so the error must name the second
    # file and count rows from that file's start, not from the start of the input.
    good = tmp_path / "part-0.parquet"
    pq.write_table(table.slice(0, 1), good)
    bad = write_parquet(tmp_path / "part-1.parquet", columns)
    err = fit_fails(tmp_path, capsys, schema, [str(good), bad])
    assert str(err) == location(bad, column, rows_text) + detail
    assert (err.file, err.column, err.rows.tolist()) == (bad, column, rows)


def test_nan_in_numeric_is_missing_not_an_error(tmp_path):
    """The counterpart of the infinite-value case: NaN and null mean 'missing' for numeric."""
    path = write_parquet(tmp_path / "ok.parquet", {"age": [1.0, NAN, None, 4.0], "income": [1.0, 2.0, 3.0, 5.0]})
    spec = FeatureSpec.fit(load_schema(write_schema(tmp_path, NUMERIC)), path)
    assert spec.fitted["profile"].stats["missing_values"] == 2


# --- rows counted per file, across record batches and files --------------------------------


def dense_column(n: int, dim: int, short_rows: Sequence[int]) -> pa.Array:
    """n vectors of dim floats; the rows in short_rows hold dim - 1 floats."""
    lengths = np.full(n, dim, dtype=np.int32)
    lengths[list(short_rows)] = dim - 1
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(np.arange(offsets[-1], dtype=np.float32))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def test_row_in_second_record_batch_of_second_file(tmp_path, capsys):
    spec = fitted_spec(tmp_path, DENSE, {"img": dense_column(10, 3, [])})
    first = write_parquet(tmp_path / "a.parquet", {"img": dense_column(20, 3, [])}, row_group_size=8)
    second = write_parquet(tmp_path / "b.parquet", {"img": dense_column(20, 3, [13, 17])}, row_group_size=8)
    # Read 8 rows at a time, row 13 of b.parquet is in its second record batch (rows 8..15) and
    # row 17 in its third: the first bad batch is reported, counted from the start of b.parquet
    # (not 20 + 13, not 13 - 8).
    err = reader_error(spec, [first, second], batch_size=4, read_rows=8)
    assert str(err) == location(second, "img", "row 13") + "expected 3 floats per vector, found 2"
    assert (err.file, err.rows.tolist()) == (second, [13])
    # The CLI reads both bad rows in one batch and names both.
    line = cli_error(capsys, ["read", "--spec", spec, "--input", first, second])
    assert line == "error: " + location(second, "img", "rows 13..17 (2 rows)") + "expected 3 floats per vector, found 2"


def test_cli_read_row_beyond_the_first_decode_chunk(tmp_path, capsys):
    """`deepsets read` decodes 16384 rows at a time; row 17000 of the second file is in chunk 2."""
    spec = fitted_spec(tmp_path, DENSE, {"img": dense_column(10, 3, [])})
    first = write_parquet(tmp_path / "a.parquet", {"img": dense_column(20_000, 3, [])}, row_group_size=5_000)
    second = write_parquet(tmp_path / "b.parquet", {"img": dense_column(20_000, 3, [17_000])}, row_group_size=5_000)
    line = cli_error(capsys, ["read", "--spec", spec, "--input", first, second])
    assert line == "error: " + location(second, "img", "row 17000") + "expected 3 floats per vector, found 2"
