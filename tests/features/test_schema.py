"""The schema TOML: valid files parse to typed modalities; every problem is reported at once,
each with its location (``modality[2] (tags).max_len``), on one line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deepsets.features.errors import SchemaError
from deepsets.features.kinds.categorical import CategoricalFeature
from deepsets.features.kinds.dense import DenseFeature
from deepsets.features.kinds.dense_sequence import DenseSequenceFeature
from deepsets.features.kinds.id_sequence import IdSequenceFeature
from deepsets.features.kinds.id_set import IdSetFeature
from deepsets.features.kinds.numeric import NumericFeature
from deepsets.features.schema import FeatureSchema, load_schema, parse_schema
from deepsets.pipelines.cli import main

ALL_KINDS = """
id_column = "item_id"

[[modality]]
name = "image"
kind = "dense"
dim = 256

[[modality]]
name = "frames"
kind = "dense_sequence"
dim = 64
max_len = 32

[[modality]]
name = "history"
kind = "id_sequence"
column = "click_history"
max_len = 200
max_size = 50000

[[modality]]
name = "tags"
kind = "id_set"
hash_buckets = 1000

[[modality]]
name = "country"
kind = "categorical"
min_count = 5

[[modality]]
name = "profile"
kind = "numeric"
columns = ["age", "income"]
"""


def write(tmp_path: Path, text: str, name: str = "schema.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def schema_error(tmp_path: Path, text: str) -> SchemaError:
    path = write(tmp_path, text)
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    err = info.value
    assert err.source == str(path)
    assert str(err).startswith(f"{path}: ")
    assert "\n" not in str(err), "a schema error must print as one line"
    return err


# --- valid schemas -----------------------------------------------------------------------


def test_every_kind_parses_with_its_fields(tmp_path):
    schema = load_schema(write(tmp_path, ALL_KINDS))
    by_name = schema.by_name()
    assert schema.id_column == "item_id"
    assert schema.names == ["country", "frames", "history", "image", "profile", "tags"]
    assert [type(m) for m in schema.modality] == [
        DenseFeature,
        DenseSequenceFeature,
        IdSequenceFeature,
        IdSetFeature,
        CategoricalFeature,
        NumericFeature,
    ]
    assert by_name["image"].dim == 256
    assert (by_name["frames"].dim, by_name["frames"].max_len, by_name["frames"].truncate) == (64, 32, "keep_first")
    history = by_name["history"]
    assert (history.max_len, history.truncate, history.max_size, history.hash_buckets) == (
        200,
        "keep_last",
        50000,
        None,
    )
    assert (by_name["tags"].hash_buckets, by_name["tags"].max_size, by_name["tags"].max_len) == (1000, None, None)
    assert by_name["country"].min_count == 5
    assert by_name["profile"].columns == ["age", "income"]


def test_column_defaults_to_name(tmp_path):
    by_name = load_schema(write(tmp_path, ALL_KINDS)).by_name()
    assert by_name["image"].column is None
    assert by_name["image"].source_column == "image"
    assert by_name["history"].source_column == "click_history"
    assert by_name["history"].source_columns() == ["click_history"]
    assert by_name["profile"].source_columns() == ["age", "income"]


def test_source_columns_id_first_then_declaration_order_without_repeats(tmp_path):
    schema = load_schema(
        write(
            tmp_path,
            """
            id_column = "item_id"

            [[modality]]
            name = "zeta"
            kind = "numeric"
            columns = ["b", "a"]

            [[modality]]
            name = "alpha"
            kind = "dense"
            dim = 4

            [[modality]]
            name = "alpha_again"
            kind = "dense"
            dim = 4
            column = "alpha"

            [[modality]]
            name = "more"
            kind = "numeric"
            columns = ["a", "c"]
            """,
        )
    )
    assert schema.source_columns() == ["item_id", "b", "a", "alpha", "c"]
    assert schema.names == ["alpha", "alpha_again", "more", "zeta"]


def test_no_id_column(tmp_path):
    schema = load_schema(write(tmp_path, '[[modality]]\nname = "x"\nkind = "categorical"\n'))
    assert schema.id_column is None
    assert schema.source_columns() == ["x"]


# --- one problem each --------------------------------------------------------------------

ONE_PROBLEM = {
    "unknown kind": (
        '[[modality]]\nname = "img"\nkind = "image"\n',
        "modality[0] (img).kind: ",
        ["'image'", "dense", "dense_sequence", "id_sequence", "id_set", "categorical", "numeric"],
    ),
    "missing kind": (
        '[[modality]]\nname = "img"\ndim = 3\n',
        "modality[0] (img).kind: ",
        ["required"],
    ),
    "dense without dim": (
        '[[modality]]\nname = "a"\nkind = "dense"\ndim = 2\n[[modality]]\nname = "img"\nkind = "dense"\n',
        "modality[1] (img).dim: ",
        ["required"],
    ),
    "negative dim": (
        '[[modality]]\nname = "img"\nkind = "dense"\ndim = -3\n',
        "modality[0] (img).dim: ",
        ["greater than 0", "-3"],
    ),
    "zero dim": (
        '[[modality]]\nname = "frames"\nkind = "dense_sequence"\ndim = 0\n',
        "modality[0] (frames).dim: ",
        ["greater than 0", "0"],
    ),
    "hash_buckets with max_size": (
        '[[modality]]\nname = "tags"\nkind = "id_set"\nhash_buckets = 100\nmax_size = 10\n',
        "modality[0] (tags): ",
        ["hash_buckets", "max_size"],
    ),
    "hash_buckets with min_count": (
        '[[modality]]\nname = "c"\nkind = "categorical"\nhash_buckets = 100\nmin_count = 2\n',
        "modality[0] (c): ",
        ["hash_buckets", "min_count"],
    ),
    "typo in a field name": (
        '[[modality]]\nname = "history"\nkind = "id_sequence"\nmax_lenn = 20\n',
        "modality[0] (history).max_lenn: ",
        ["unknown field", "did you mean 'max_len'?"],
    ),
    "typo in a top-level field": (
        'idcolumn = "item_id"\n[[modality]]\nname = "img"\nkind = "dense"\ndim = 3\n',
        "idcolumn: ",
        ["unknown field", "did you mean 'id_column'?"],
    ),
    "unknown truncate": (
        '[[modality]]\nname = "history"\nkind = "id_sequence"\ntruncate = "keep_middle"\n',
        "modality[0] (history).truncate: ",
        ["'keep_last'", "'keep_first'", "keep_middle"],
    ),
    "numeric with duplicate columns": (
        '[[modality]]\nname = "profile"\nkind = "numeric"\ncolumns = ["age", "income", "age"]\n',
        "modality[0] (profile).columns: ",
        ["listed twice", "'age'"],
    ),
    "numeric with no columns": (
        '[[modality]]\nname = "profile"\nkind = "numeric"\ncolumns = []\n',
        "modality[0] (profile).columns: ",
        ["at least 1"],
    ),
    "no modality at all": (
        'id_column = "item_id"\n',
        "modality: ",
        ["required"],
    ),
    "bad modality name": (
        '[[modality]]\nname = "my image"\nkind = "dense"\ndim = 3\n',
        "modality[0] (my image).name: ",
        ["pattern", "'my image'"],
    ),
    "a modality reads the id column": (
        'id_column = "item_id"\n[[modality]]\nname = "cat"\nkind = "categorical"\ncolumn = "item_id"\n',
        "modality 'cat' reads the id column 'item_id'",
        [],
    ),
    "duplicate modality name": (
        '[[modality]]\nname = "img"\nkind = "dense"\ndim = 3\n[[modality]]\nname = "img"\nkind = "categorical"\n',
        "modality name 'img' is declared 2 times",
        ["unique"],
    ),
}


@pytest.mark.parametrize("text, location, details", ONE_PROBLEM.values(), ids=ONE_PROBLEM.keys())
def test_one_problem_is_reported_with_its_location(tmp_path, text, location, details):
    err = schema_error(tmp_path, text)
    assert len(err.problems) == 1, err.problems
    (problem,) = err.problems
    assert problem.startswith(location), problem
    for detail in details:
        assert detail in problem, (detail, problem)
    assert str(err) == f"{err.source}: {problem}"


def test_toml_syntax_error_names_the_line(tmp_path):
    err = schema_error(tmp_path, '[[modality]]\nname = "img"\nkind = dense\ndim = 3\n')
    assert len(err.problems) == 1
    assert err.problems[0].startswith("TOML syntax error: ")
    assert "line 3" in err.problems[0]


def test_missing_schema_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert str(info.value) == f"{path}: cannot read schema file: No such file or directory"


# --- several problems at once -------------------------------------------------------------

THREE_PROBLEMS = """
[[modality]]
name = "image"
kind = "dense"

[[modality]]
name = "tags"
kind = "id_set"
max_lenn = 10

[[modality]]
name = "history"
kind = "sequence"
"""


def test_three_problems_are_reported_at_once(tmp_path):
    err = schema_error(tmp_path, THREE_PROBLEMS)
    assert len(err.problems) == 3, err.problems
    locations = ["modality[0] (image).dim: ", "modality[1] (tags).max_lenn: ", "modality[2] (history).kind: "]
    for location, problem in zip(locations, err.problems):
        assert problem.startswith(location), (location, problem)
    assert "'sequence'" in err.problems[2]
    assert str(err) == f"{err.source}: 3 problems: " + "; ".join(err.problems)


def test_duplicate_name_is_reported_with_field_problems(tmp_path):
    err = schema_error(
        tmp_path,
        """
        [[modality]]
        name = "tags"
        kind = "id_set"
        hash_buckets = 10
        max_size = 5

        [[modality]]
        name = "tags"
        kind = "id_set"

        [[modality]]
        name = "frames"
        kind = "dense_sequence"
        dim = -1
        """,
    )
    assert len(err.problems) == 3, err.problems
    assert err.problems[0] == "modality name 'tags' is declared 2 times (names must be unique)"
    assert err.problems[1].startswith("modality[0] (tags): hash_buckets cannot be combined")
    assert err.problems[2].startswith("modality[2] (frames).dim: ")


def test_cli_prints_every_schema_problem_on_one_error_line(tmp_path, capsys):
    schema = write(tmp_path, THREE_PROBLEMS)
    status = main(
        ["fit", "--schema", str(schema), "--input", str(tmp_path / "unused.parquet"), "--out", str(tmp_path / "s.json")]
    )
    assert status == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {schema}: 3 problems: ")
    for location in ("modality[0] (image).dim", "modality[1] (tags).max_lenn", "modality[2] (history).kind"):
        assert location in lines[0]
    assert not (tmp_path / "s.json").exists()


def test_a_schema_built_directly_from_dicts_picks_each_class_by_kind():
    schema = FeatureSchema.model_validate(
        {"modality": ({"name": "img", "kind": "dense", "dim": 3}, {"name": "c", "kind": "categorical"})}
    )
    assert [type(m).__name__ for m in schema.modality] == ["DenseFeature", "CategoricalFeature"]
    assert parse_schema({"modality": ({"name": "img", "kind": "dense", "dim": 3},)}).names == [
        "img"
    ]  # a tuple of tables too
    with pytest.raises(ValueError, match=r"modality\[0\]: unknown kind 'picture'"):
        FeatureSchema.model_validate({"modality": [{"name": "img", "kind": "picture"}]})


def test_one_column_holds_one_kind_of_value():
    with pytest.raises(
        SchemaError,
        match=r"column 'x' is read by modality 'a' \(dense\) and 'b' \(categorical\): one column holds one kind of value",
    ):
        parse_schema(
            {
                "modality": [
                    {"name": "a", "kind": "dense", "dim": 2, "column": "x"},
                    {"name": "b", "kind": "categorical", "column": "x"},
                ]
            }
        )
    both = parse_schema(
        {
            "modality": [
                {"name": "seq", "kind": "id_sequence", "column": "h"},
                {"name": "bag", "kind": "id_set", "column": "h"},
            ]
        }
    )
    assert both.source_columns() == ["h"]  # a sequence and a set view of one list of ids read it alike


def test_a_number_written_as_a_string_is_refused_not_coerced(tmp_path):
    err = schema_error(
        tmp_path,
        '[[modality]]\nname = "img"\nkind = "dense"\ndim = "8"\n\n[[modality]]\nname = "tags"\nkind = "id_set"\nmax_len = 2.5\n',
    )
    assert len(err.problems) == 2, err.problems
    assert err.problems[0] == "modality[0] (img).dim: Input should be a valid integer (found '8')"
    assert err.problems[1].startswith("modality[1] (tags).max_len: ")
