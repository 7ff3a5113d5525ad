"""Finding input files and checking their columns before any row is read."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepsets.features.errors import DataError
from deepsets.features.files import check_columns, open_parquet, resolve_inputs
from deepsets.features.schema import parse_schema


def touch_parquet(path, **columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns or {"x": [1]}), path)
    return str(path)


def test_directories_globs_and_files_expand_sorted_without_repeats(tmp_path):
    b = touch_parquet(tmp_path / "d" / "b.parquet")
    a = touch_parquet(tmp_path / "d" / "sub" / "a.parquet")
    (tmp_path / "d" / "notes.txt").write_text("not data")
    c = touch_parquet(tmp_path / "c.parquet")
    assert resolve_inputs(tmp_path / "d") == [b, a]  # recursive, *.parquet only, sorted
    assert resolve_inputs(str(tmp_path / "*.parquet")) == [c]
    assert resolve_inputs([c, str(tmp_path / "d"), c]) == [c, b, a]  # first occurrence kept


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: t / "nope.parquet", "does not exist"),
        (lambda t: str(t / "*.nothing"), "no input files match"),
        (lambda t: (t / "empty").mkdir() or t / "empty", "holds no \\*.parquet files"),
    ],
)
def test_paths_that_find_nothing_are_named(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        resolve_inputs(make(tmp_path))
    with pytest.raises(DataError, match="no input files given"):
        resolve_inputs([])


def test_every_bad_path_is_named_in_one_error(tmp_path):
    good = touch_parquet(tmp_path / "good.parquet")
    bad = [str(tmp_path / f"missing{i}.parquet") for i in range(7)]
    with pytest.raises(DataError) as err:
        resolve_inputs([bad[0], good, str(tmp_path / "*.nothing")])
    assert "missing0.parquet' does not exist" in str(err.value) and "no input files match" in str(err.value)
    with pytest.raises(DataError, match=r"missing4.parquet' does not exist; and 2 more bad input paths$") as err:
        resolve_inputs(bad)
    assert "missing5" not in str(err.value)


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    (tmp_path / "data.parquet").write_text("id,x\n1,2\n")
    with pytest.raises(DataError, match=r"data.parquet: not a readable Parquet file"):
        open_parquet(str(tmp_path / "data.parquet"))


def test_check_columns_names_missing_and_mistyped_columns(tmp_path):
    schema = parse_schema(
        {"modality": [{"name": "image", "kind": "dense", "dim": 2}, {"name": "brand", "kind": "categorical"}]}
    )
    good = pa.schema([("image", pa.list_(pa.float32())), ("brand", pa.string()), ("y", pa.int8())])
    check_columns("f.parquet", good, schema.modality, ["y"])
    check_columns(
        "f.parquet", pa.schema([("image", pa.null()), ("brand", pa.string())]), schema.modality
    )  # all missing is fine
    with pytest.raises(DataError, match=r"f.parquet, column 'y': column missing \(file has: image, brand\)"):
        check_columns(
            "f.parquet", pa.schema([("image", pa.list_(pa.float32())), ("brand", pa.string())]), schema.modality, ["y"]
        )
    with pytest.raises(DataError, match=r"column 'brand': column missing for modality 'brand'"):
        check_columns("f.parquet", pa.schema([("image", pa.list_(pa.float32()))]), schema.modality)
    with pytest.raises(
        DataError,
        match=r"column 'image': modality 'image' \(dense\) expects list<float> or fixed_size_list<float, 2>, found string",
    ):
        check_columns("f.parquet", pa.schema([("image", pa.string()), ("brand", pa.string())]), schema.modality)
    with pytest.raises(DataError, match=r"fixed_size_list<float, 2>, found fixed_size_list<item: float>\[3\]"):
        check_columns(
            "f.parquet", pa.schema([("image", pa.list_(pa.float32(), 3)), ("brand", pa.string())]), schema.modality
        )
