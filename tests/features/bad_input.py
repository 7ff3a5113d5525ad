"""Writing bad input and capturing the one error it ends in, from the Python API (a DataError)
and from the CLI (exit status 2, one ``error:`` line), for the bad-input tests."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

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
