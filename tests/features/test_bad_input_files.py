"""Inputs that are not (usable) Parquet and bad CLI arguments end in one message naming the file
or argument and what was expected (``tests/features/bad_input.py``)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from tests.features.bad_input import (
    DENSE,
    F32,
    ID_SEQ,
    cli_error,
    fit_fails,
    fitted_spec,
    location,
    read_fails,
    write_parquet,
    write_schema,
)

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
    schema = parse_schema(
        {
            "modality": [
                {"name": "brand", "kind": "categorical"},
                {"name": "num", "kind": "numeric", "columns": ["price"]},
            ]
        }
    )
    with pytest.raises(
        DataError,
        match=r"column 'brand': holds no value in any training file \(its Arrow type is null\), so the id type .* 'brand'",
    ):
        FeatureSpec.fit(schema, tmp_path / "a.parquet")
