"""ParquetBatchReader: exact batch sizes across files, drop_last accounting, local shuffling."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from deepsets.features.errors import DataError
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec

SCHEMA = {
    "id_column": "rid",
    "modality": [{"name": "img", "kind": "dense", "dim": 2, "encoding": "none"}],
}  # raw values: rows are checked by value


def write(path, start, n, bad_row=None):
    rows = [[float(i), float(i)] for i in range(start, start + n)]
    if bad_row is not None:
        rows[bad_row] = [1.0]
    pq.write_table(
        pa.table({"rid": pa.array(range(start, start + n), pa.int64()), "img": pa.array(rows, pa.list_(pa.float32()))}),
        path,
    )
    return str(path)


@pytest.fixture
def files(tmp_path):
    return [write(tmp_path / "a.parquet", 0, 25), write(tmp_path / "b.parquet", 25, 18)]


def test_exact_batches_across_files_and_drop_last(files):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), files)
    reader = ParquetBatchReader(spec, files, batch_size=10, read_rows=7, drop_last=True)
    batches = list(reader)
    assert [b.num_rows for b in batches] == [10, 10, 10, 10]
    assert reader.rows_read == 43 and reader.rows_dropped == 3
    assert np.concatenate([b.ids for b in batches]).tolist() == list(range(40))


def test_shuffled_reading_keeps_every_row_and_its_values(files):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), files)
    batches = list(ParquetBatchReader(spec, files, batch_size=8, read_rows=16, shuffle_seed=3))
    ids = np.concatenate([b.ids for b in batches])
    assert sorted(ids.tolist()) == list(range(43)) and ids.tolist() != list(range(43))
    for b in batches:  # each row still carries its own values
        assert b["img"].values[:, 0].tolist() == [float(i) for i in b.ids]
    again = np.concatenate([b.ids for b in ParquetBatchReader(spec, files, batch_size=8, read_rows=16, shuffle_seed=3)])
    assert again.tolist() == ids.tolist()  # same seed, same order


def test_shuffled_reading_reports_file_rows(tmp_path, files):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), files)
    bad = write(tmp_path / "c.parquet", 100, 30, bad_row=21)
    with pytest.raises(DataError) as info:
        list(ParquetBatchReader(spec, [bad], batch_size=8, read_rows=16, shuffle_seed=5))
    assert info.value.rows.tolist() == [21] and "c.parquet" in str(info.value)


def test_group_shuffle_keeps_each_group_together_within_a_chunk(tmp_path):
    n = 60
    group = np.repeat(np.arange(12), 5)  # 12 groups of 5 rows
    big = 2**40 + np.arange(n)  # ids beyond float32's exact range stay exact as int64 keys
    pq.write_table(
        pa.table(
            {
                "rid": pa.array(range(n), pa.int64()),
                "img": pa.array([[float(i), 0.0] for i in range(n)], pa.list_(pa.float32())),
                "qid": pa.array(group, pa.int64()),
                "big": pa.array(big, pa.int64()),
            }
        ),
        tmp_path / "g.parquet",
    )
    spec = FeatureSpec.fit(parse_schema(SCHEMA), [str(tmp_path / "g.parquet")])
    reader = ParquetBatchReader(
        spec, [str(tmp_path / "g.parquet")], batch_size=60, shuffle_seed=5, key_columns=["big"], group_column="qid"
    )
    (batch,) = list(reader)
    seen = batch.labels["qid"].tolist()
    assert batch.labels["qid"].dtype == batch.labels["big"].dtype == torch.int64
    assert sorted(seen) == group.tolist() and seen != group.tolist()  # shuffled ...
    assert all(len(set(seen[i : i + 5])) == 1 for i in range(0, n, 5))  # ... as whole groups
    assert batch.labels["big"].tolist() == (2**40 + batch.ids).tolist()


def test_a_null_or_float_key_column_is_named(tmp_path):
    pq.write_table(
        pa.table(
            {
                "rid": pa.array([0, 1], pa.int64()),
                "img": pa.array([[0.0, 0.0]] * 2, pa.list_(pa.float32())),
                "qid": pa.array([1, None], pa.int64()),
                "fq": pa.array([1.0, 2.0]),
            }
        ),
        tmp_path / "k.parquet",
    )
    spec = FeatureSpec.fit(parse_schema(SCHEMA), [str(tmp_path / "k.parquet")])
    with pytest.raises(DataError, match=r"k.parquet, column 'qid', row 1: null id"):
        list(ParquetBatchReader(spec, [str(tmp_path / "k.parquet")], key_columns=["qid"]))
    with pytest.raises(DataError, match=r"column 'fq'.*integer ids"):
        list(ParquetBatchReader(spec, [str(tmp_path / "k.parquet")], key_columns=["fq"]))
