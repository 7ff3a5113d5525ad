"""Bad input ends in one message a user can act on: the file, the column, the file-relative
0-based rows, and what was expected versus found -- both from the Python API (a DataError)
and from the CLI (exit status 2 and exactly one ``error:`` line on stderr, no traceback)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepsets.features.errors import DataError
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.cli import main

NAN, INF = math.nan, math.inf
F32 = pa.list_(pa.float32())

DENSE = '[[modality]]\nname = "img"\nkind = "dense"\ndim = 3\n'
DENSE_SEQ = '[[modality]]\nname = "frames"\nkind = "dense_sequence"\ndim = 2\n'
ID_SEQ = '[[modality]]\nname = "history"\nkind = "id_sequence"\nmax_len = 2\n'
ID_SET = '[[modality]]\nname = "tags"\nkind = "id_set"\n'
CATEGORICAL = '[[modality]]\nname = "country"\nkind = "categorical"\n'
NUMERIC = '[[modality]]\nname = "profile"\nkind = "numeric"\ncolumns = ["age", "income"]\n'


def write_parquet(path: Path, columns: dict, **kwargs) -> str:
    pq.write_table(pa.table(columns), path, **kwargs)
    return str(path)


def write_schema(tmp_path: Path, text: str) -> str:
    path = tmp_path / "schema.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def location(file: str, column: Optional[str] = None, rows: Optional[str] = None) -> str:
    """The start of a DataError message: 'FILE, column 'C', rows R: '."""
    parts = [file] + ([f"column '{column}'"] if column else []) + ([rows] if rows else [])
    return ", ".join(parts) + ": "


def cli_error(capsys, argv: Sequence[str]) -> str:
    """Run the CLI, require exit status 2 and one ``error:`` line on stderr; return that line."""
    capsys.readouterr()
    status = main(list(argv))
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    return lines[0]


def fit_fails(tmp_path, capsys, schema_text: str, inputs: Sequence[str]) -> DataError:
    """Fit through the API and through ``deepsets fit``; both must fail with the same message."""
    schema = write_schema(tmp_path, schema_text)
    with pytest.raises(DataError) as info:
        FeatureSpec.fit(load_schema(schema), list(inputs))
    err = info.value
    assert "\n" not in str(err)
    out = tmp_path / "spec.json"
    line = cli_error(capsys, ["fit", "--schema", schema, "--input", *inputs, "--out", str(out)])
    assert line == f"error: {err}"
    assert not out.exists()
    return err


def fitted_spec(tmp_path, schema_text: str, columns: dict) -> str:
    """Fit on a good file; return the saved spec path."""
    good = write_parquet(tmp_path / "train.parquet", columns)
    spec = FeatureSpec.fit(load_schema(write_schema(tmp_path, schema_text)), good)
    path = tmp_path / "spec.json"
    spec.save(path)
    return str(path)


def reader_error(spec_path: str, inputs: Sequence[str], labels: Sequence[str] = (), **reader_kwargs) -> DataError:
    reader = ParquetBatchReader(FeatureSpec.load(spec_path), list(inputs), label_columns=labels, **reader_kwargs)
    with pytest.raises(DataError) as info:
        for _ in reader:
            pass
    assert "\n" not in str(info.value)
    return info.value


def read_fails(capsys, spec_path: str, inputs: Sequence[str], labels: Sequence[str] = ()) -> DataError:
    """Read through ParquetBatchReader and through ``deepsets read``; both must fail alike."""
    err = reader_error(spec_path, inputs, labels)
    argv = ["read", "--spec", spec_path, "--input", *inputs] + (["--labels", *labels] if labels else [])
    line = cli_error(capsys, argv)
    assert line == f"error: {err}"
    return err


# --- columns and types --------------------------------------------------------------------

TYPE_CASES = {
    "missing column": (DENSE, {"other": [1, 2]}, "img", ["column missing for modality 'img'", "file has: other"]),
    "missing one numeric column": (
        NUMERIC, {"age": [1.0, 2.0], "salary": [3.0, 4.0]}, "income", ["column missing for modality 'profile'", "age, salary"],
    ),
    "dense given list<string>": (
        DENSE, {"img": pa.array([["a", "b", "c"]], pa.list_(pa.string()))}, "img",
        ["(dense) expects list<float> or fixed_size_list<float, 3>", "found list<element: string>"],
    ),
    "dense given fixed_size_list of the wrong size": (
        DENSE, {"img": pa.array([[1.0, 2.0]], pa.list_(pa.float32(), 2))}, "img",
        ["fixed_size_list<float, 3>", "found fixed_size_list<element: float>[2]"],
    ),
    "dense given a scalar": (DENSE, {"img": pa.array([1.0, 2.0])}, "img", ["expects list<float>", "found double"]),
    "categorical given list<int>": (
        CATEGORICAL, {"country": pa.array([[1], [2]], pa.list_(pa.int64()))}, "country",
        ["(categorical) expects an int or string scalar", "found list<element: int64>"],
    ),
    "id_sequence given list<float>": (
        ID_SEQ, {"history": pa.array([[1.5]], F32)}, "history", ["expects list<int> or list<string>", "found list<element: float>"],
    ),
    "numeric given strings": (
        NUMERIC, {"age": pa.array(["1"]), "income": pa.array([1.0])}, "age", ["(numeric) expects a numeric scalar", "found string"],
    ),
    "dense_sequence given vectors of the wrong fixed size": (
        DENSE_SEQ, {"frames": pa.array([[[1.0, 2.0, 3.0]]], pa.list_(pa.list_(pa.float32(), 3)))}, "frames",
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
        DENSE, {"img": pa.array([[1, 2, 3], None, [1, 2], [1, 2, 3], [], [4, 5]], F32)}, "img", "rows 2..5 (2 rows)", [2, 5],
        "expected 3 floats per vector, found 2",
    ),
    "NaN inside a dense vector": (
        DENSE, {"img": pa.array([[1, 2, 3], None, [1, 2, 3], [1, NAN, 3]], F32)}, "img", "row 3", [3],
        "NaN inside a dense vector (expected only finite floats)",
    ),
    "inf inside a fixed-size dense vector": (
        DENSE, {"img": pa.array([[1, 2, 3], None, [-INF, 2, 3], [1, 2, 3]], pa.list_(pa.float32(), 3))}, "img", "row 2", [2],
        "infinite value inside a dense vector (expected only finite floats)",
    ),
    "null element inside a dense vector": (
        DENSE, {"img": pa.array([[1, 2, 3], [1, 2, 3], None, [1, None, 3], [1, 2, 3]], pa.list_(pa.float64()))}, "img", "row 3", [3],
        "null element inside a dense vector (expected only finite floats)",
    ),
    "dense_sequence vector of the wrong dim": (
        DENSE_SEQ, {"frames": pa.array([[[1, 2]], None, [], [[1, 2], [3, 4, 5]]], pa.list_(F32))}, "frames", "row 3", [3],
        "expected every vector to hold 2 floats, found 3 floats",
    ),
    "NaN inside a dense_sequence vector": (
        DENSE_SEQ, {"frames": pa.array([[[1, 2]], [[1, 2], [NAN, 4]]], pa.list_(F32))}, "frames", "row 1", [1],
        "NaN inside a vector of a sequence (expected only finite floats)",
    ),
    "negative id in an id_sequence": (
        ID_SEQ, {"history": pa.array([[1, 2], None, [], [4, -5, 6], [7]], pa.list_(pa.int64()))}, "history", "row 3", [3],
        "negative integer id (expected ids >= 0)",
    ),
    "negative categorical": (
        CATEGORICAL, {"country": pa.array([1, None, 2, -1, None, -7], pa.int32())}, "country", "rows 3..5 (2 rows)", [3, 5],
        "negative integer id (expected ids >= 0)",
    ),
    "null id inside an id_set": (
        ID_SET, {"tags": pa.array([[1, 2], None, [3, None], [4]], pa.list_(pa.int64()))}, "tags", "row 2", [2],
        "null id (expected an int or string id)",
    ),
    "null string id inside an id_set": (
        ID_SET, {"tags": pa.array([["a"], [], ["b", "c"], [None]], pa.list_(pa.string()))}, "tags", "row 3", [3],
        "null id (expected an int or string id)",
    ),
    "infinite numeric value": (
        NUMERIC, {"age": [1.0, NAN, None, 4.0], "income": [1.0, 2.0, 3.0, -INF]}, "income", "row 3", [3],
        "infinite value (expected a finite number, or null/NaN for missing)",
    ),
}


@pytest.mark.parametrize("schema, columns, column, rows_text, rows, detail", VALUE_CASES.values(), ids=VALUE_CASES.keys())
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


# --- files that are not (usable) Parquet ---------------------------------------------------


def test_text_file_named_parquet(tmp_path, capsys):
    path = tmp_path / "data.parquet"
    path.write_text("this is not parquet, just some text\n", encoding="utf-8")
    err = fit_fails(tmp_path, capsys, DENSE, [str(path)])
    assert str(err).startswith(location(str(path)) + "not a readable Parquet file (")
    assert err.file == str(path)


def test_csv_among_two_inputs_is_named(tmp_path, capsys):
    good = write_parquet(tmp_path / "good.parquet", {"img": pa.array([[1, 2, 3]], F32)})
    csv = tmp_path / "extra.csv"
    csv.write_text("img\n1\n2\n3\n", encoding="utf-8")
    err = fit_fails(tmp_path, capsys, DENSE, [good, str(csv)])
    assert str(err).startswith(location(str(csv)) + "not a readable Parquet file (")
    assert "good.parquet" not in str(err)


def test_parquet_with_no_rows(tmp_path, capsys):
    empty = write_parquet(tmp_path / "empty.parquet", {"img": pa.array([], F32)})
    err = fit_fails(tmp_path, capsys, DENSE, [empty])
    assert str(err) == location(empty) + "input has no rows (1 file(s), all empty)"


def test_read_of_a_parquet_with_no_rows(tmp_path, capsys):
    spec = fitted_spec(tmp_path, DENSE, {"img": pa.array([[1, 2, 3]], F32)})
    empty = write_parquet(tmp_path / "empty.parquet", {"img": pa.array([], F32)})
    err = read_fails(capsys, spec, [empty])
    assert "input has no rows" in str(err)


def test_directory_without_parquet_files(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.csv").write_text("a\n1\n", encoding="utf-8")
    err = fit_fails(tmp_path, capsys, DENSE, [str(folder)])
    assert str(err) == f"directory '{folder}' holds no *.parquet files"


def test_glob_matching_nothing(tmp_path, capsys):
    write_parquet(tmp_path / "train.parquet", {"img": pa.array([[1, 2, 3]], F32)})
    pattern = str(tmp_path / "part-*.parquet")
    err = fit_fails(tmp_path, capsys, DENSE, [pattern])
    assert str(err) == f"no input files match '{pattern}'"


def test_input_path_that_does_not_exist(tmp_path, capsys):
    good = write_parquet(tmp_path / "train.parquet", {"img": pa.array([[1, 2, 3]], F32)})
    missing = str(tmp_path / "nope.parquet")
    err = fit_fails(tmp_path, capsys, DENSE, [good, missing])
    assert str(err) == f"input '{missing}' does not exist"


# --- applying a fitted spec to data unlike the training data -------------------------------

APPLY_CASES = {
    "string ids where training had int ids (id_sequence)": (
        ID_SEQ, {"history": pa.array([[1, 2], [3]], pa.list_(pa.int64()))},
        {"history": pa.array([["a"], ["b", "c"]], pa.list_(pa.string()))}, "history",
    ),
    "string ids where training had int ids (categorical)": (
        CATEGORICAL, {"country": pa.array([1, 2, 3])}, {"country": pa.array(["fr", "de"])}, "country",
    ),
    "string ids where training had int ids (hashed id_set)": (
        ID_SET.replace('"id_set"\n', '"id_set"\nhash_buckets = 16\n'), {"tags": pa.array([[1, 2], [3]], pa.list_(pa.int64()))},
        {"tags": pa.array([["a"], ["b"]], pa.list_(pa.string()))}, "tags",
    ),
}


@pytest.mark.parametrize("schema, train, apply, column", APPLY_CASES.values(), ids=APPLY_CASES.keys())
def test_string_ids_at_apply_time(tmp_path, capsys, schema, train, apply, column):
    spec = fitted_spec(tmp_path, schema, train)
    good = write_parquet(tmp_path / "a.parquet", train)
    bad = write_parquet(tmp_path / "b.parquet", apply)
    err = read_fails(capsys, spec, [good, bad])
    assert str(err).startswith(location(bad, column) + "expected int ids (as in the training data), found "), str(err)
    assert "string" in str(err).rsplit("found ", 1)[1]


def test_wrong_type_at_apply_time(tmp_path, capsys):
    spec = fitted_spec(tmp_path, DENSE, {"img": pa.array([[1, 2, 3]], F32)})
    bad = write_parquet(tmp_path / "b.parquet", {"img": pa.array([["1", "2", "3"]], pa.list_(pa.string()))})
    err = read_fails(capsys, spec, [bad])
    assert str(err) == location(bad, "img") + (
        "modality 'img' (dense) expects list<float> or fixed_size_list<float, 3>, found list<element: string>"
    )


def test_training_files_with_int_and_string_ids(tmp_path):
    ints = write_parquet(tmp_path / "a.parquet", {"history": pa.array([[1, 2]], pa.list_(pa.int64()))})
    strings = write_parquet(tmp_path / "b.parquet", {"history": pa.array([["x"]], pa.list_(pa.string()))})
    with pytest.raises(DataError) as info:
        FeatureSpec.fit(load_schema(write_schema(tmp_path, ID_SEQ)), [ints, strings])
    assert str(info.value) == f"{strings}, column 'history': string ids here but int ids in {ints} (one type per column)"


@pytest.mark.parametrize("second, message", [
    (pa.array(["u1", "u2"]), "string row ids here but int row ids in {first} (one kind of id per id column)"),
    (pa.array([1.0, None]), "row ids must be integers or strings, found double (pandas writes an integer column with nulls as floats"),
])
def test_an_id_column_of_two_kinds_is_refused_by_fit_not_later_by_embed(tmp_path, capsys, second, message):
    schema = 'id_column = "user"\n' + DENSE
    first = write_parquet(tmp_path / "a.parquet", {"user": pa.array([1, 2], pa.int64()), "img": pa.array([[1, 2, 3]] * 2, F32)})
    bad = write_parquet(tmp_path / "b.parquet", {"user": second, "img": pa.array([[1, 2, 3]] * 2, F32)})
    err = fit_fails(tmp_path, capsys, schema, [first, bad])
    assert str(err).startswith(location(bad, "user") + message.format(first=first))


def test_fit_refuses_an_existing_spec_without_overwrite(tmp_path, capsys):
    schema = write_schema(tmp_path, DENSE)
    good = write_parquet(tmp_path / "a.parquet", {"img": pa.array([[1, 2, 3]], F32)})
    out = tmp_path / "spec.json"
    out.write_text("kept", encoding="utf-8")
    line = cli_error(capsys, ["fit", "--schema", schema, "--input", good, "--out", str(out)])
    assert line == f"error: --out {out} already exists: pass --overwrite to replace it, or choose another --out"
    assert out.read_text(encoding="utf-8") == "kept"
    assert main(["fit", "--schema", schema, "--input", good, "--out", str(out), "--overwrite", "--json"]) == 0
    assert FeatureSpec.load(out).names == ["img"]


def test_training_files_may_differ_in_width_and_list_flavour(tmp_path):
    a = write_parquet(tmp_path / "a.parquet", {"img": pa.array([[1, 2, 3]], pa.list_(pa.float32(), 3)), "history": pa.array([[1, 2]], pa.list_(pa.int32()))})
    b = write_parquet(tmp_path / "b.parquet", {"img": pa.array([[4, 5, 6], None], pa.large_list(pa.float64())), "history": pa.array([[2], [7]], pa.list_(pa.uint64()))})
    schema = load_schema(write_schema(tmp_path, DENSE + ID_SEQ))
    spec = FeatureSpec.fit(schema, [a, b])
    assert spec.fitted["history"].vocab == [2, 1, 7]
    assert spec.stats()["img"]["presence_rate"] == pytest.approx(2 / 3)


# --- labels -------------------------------------------------------------------------------


def test_null_label(tmp_path, capsys):
    spec = fitted_spec(tmp_path, DENSE, {"img": pa.array([[1, 2, 3]], F32)})
    rows = {"img": pa.array([[1, 2, 3]] * 5, F32), "y": pa.array([1.0, 0.0, 1.0, None, 0.0])}
    path = write_parquet(tmp_path / "labelled.parquet", rows)
    err = read_fails(capsys, spec, [path], labels=["y"])
    assert str(err) == location(path, "y", "row 3") + "null label (every labelled row needs a value)"


def test_missing_label_column(tmp_path, capsys):
    spec = fitted_spec(tmp_path, DENSE, {"img": pa.array([[1, 2, 3]], F32)})
    path = write_parquet(tmp_path / "unlabelled.parquet", {"img": pa.array([[1, 2, 3]], F32)})
    err = read_fails(capsys, spec, [path], labels=["y"])
    assert str(err) == location(path, "y") + "column missing (file has: img)"


# --- the CLI's own arguments --------------------------------------------------------------


def test_unwritable_spec_output(tmp_path, capsys):
    good = write_parquet(tmp_path / "train.parquet", {"img": pa.array([[1, 2, 3]], F32)})
    out = tmp_path / "no" / "such" / "dir" / "spec.json"
    line = cli_error(capsys, ["fit", "--schema", write_schema(tmp_path, DENSE), "--input", good, "--out", str(out)])
    assert str(out) in line


def test_uint64_id_beyond_int64(tmp_path, capsys):
    train = write_parquet(tmp_path / "train.parquet", {"history": pa.array([[1, 2]], pa.list_(pa.uint64()))})
    spec_path = str(tmp_path / "spec.json")
    FeatureSpec.fit(load_schema(write_schema(tmp_path, ID_SEQ)), [train]).save(spec_path)
    bad = write_parquet(tmp_path / "bad.parquet", {"history": pa.array([[1], [2, 2**63 + 5]], pa.list_(pa.uint64()))})
    err = read_fails(capsys, spec_path, [bad])
    assert str(err) == location(bad, "history", "row 1") + "integer id above 2**63-1 (expected ids that fit in int64)"


def test_spec_file_that_is_not_a_spec(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 1}')
    data = write_parquet(tmp_path / "x.parquet", {"img": pa.array([[1, 2, 3]], F32)})
    line = cli_error(capsys, ["read", "--spec", str(bad), "--input", data])
    assert line == f"error: {bad}: not a feature spec (needs 'schema' and 'fitted' objects)"


def test_an_id_column_with_no_value_at_all_cannot_be_fitted(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from deepsets.features.errors import DataError
    from deepsets.features.schema import parse_schema
    from deepsets.features.spec import FeatureSpec

    pq.write_table(pa.table({"brand": pa.nulls(5), "price": [1.0, 2.0, 3.0, 4.0, 5.0]}), tmp_path / "a.parquet")
    schema = parse_schema({"modality": [{"name": "brand", "kind": "categorical"}, {"name": "num", "kind": "numeric", "columns": ["price"]}]})
    with pytest.raises(DataError, match=r"column 'brand': holds no value in any training file \(its Arrow type is null\), so the id type .* 'brand'"):
        FeatureSpec.fit(schema, tmp_path / "a.parquet")
