"""A fitted spec applied to data unlike the training data, and bad labels: one message naming the
file, column and rows (``tests/features/bad_input.py``)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deepsets.features.errors import DataError
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.cli import main
from tests.features.bad_input import (
    CATEGORICAL,
    DENSE,
    F32,
    ID_SEQ,
    ID_SET,
    cli_error,
    fit_fails,
    fitted_spec,
    location,
    read_fails,
    write_parquet,
    write_schema,
)

# --- applying a fitted spec to data unlike the training data -------------------------------

APPLY_CASES = {
    "string ids where training had int ids (id_sequence)": (
        ID_SEQ,
        {"history": pa.array([[1, 2], [3]], pa.list_(pa.int64()))},
        {"history": pa.array([["a"], ["b", "c"]], pa.list_(pa.string()))},
        "history",
    ),
    "string ids where training had int ids (categorical)": (
        CATEGORICAL,
        {"country": pa.array([1, 2, 3])},
        {"country": pa.array(["fr", "de"])},
        "country",
    ),
    "string ids where training had int ids (hashed id_set)": (
        ID_SET.replace('"id_set"\n', '"id_set"\nhash_buckets = 16\n'),
        {"tags": pa.array([[1, 2], [3]], pa.list_(pa.int64()))},
        {"tags": pa.array([["a"], ["b"]], pa.list_(pa.string()))},
        "tags",
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
    assert (
        str(info.value) == f"{strings}, column 'history': string ids here but int ids in {ints} (one type per column)"
    )


@pytest.mark.parametrize(
    "second, message",
    [
        (pa.array(["u1", "u2"]), "string row ids here but int row ids in {first} (one kind of id per id column)"),
        (
            pa.array([1.0, None]),
            "row ids must be integers or strings, found double (pandas writes an integer column with nulls as floats",
        ),
    ],
)
def test_an_id_column_of_two_kinds_is_refused_by_fit_not_later_by_embed(tmp_path, capsys, second, message):
    schema = 'id_column = "user"\n' + DENSE
    first = write_parquet(
        tmp_path / "a.parquet", {"user": pa.array([1, 2], pa.int64()), "img": pa.array([[1, 2, 3]] * 2, F32)}
    )
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
    a = write_parquet(
        tmp_path / "a.parquet",
        {"img": pa.array([[1, 2, 3]], pa.list_(pa.float32(), 3)), "history": pa.array([[1, 2]], pa.list_(pa.int32()))},
    )
    b = write_parquet(
        tmp_path / "b.parquet",
        {
            "img": pa.array([[4, 5, 6], None], pa.large_list(pa.float64())),
            "history": pa.array([[2], [7]], pa.list_(pa.uint64())),
        },
    )
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
