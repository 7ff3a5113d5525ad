"""FeatureSpec: fit -> save -> load gives identical transforms; OOV and hashing as documented."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from deepsets.features.ids import FIRST_VOCAB_INDEX, OOV_INDEX, IdMapper, fnv1a64, splitmix64
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec

SCHEMA = {
    "id_column": "rid",
    "modality": [
        {"name": "hist", "kind": "id_sequence", "max_len": 3, "min_count": 2},
        {"name": "cat", "kind": "categorical", "max_size": 2},
        {"name": "hashed", "kind": "id_set", "column": "tags", "hash_buckets": 5},
        {"name": "num", "kind": "numeric", "columns": ["x"]},
    ],
}


def _write(path, hist, cat, tags, x):
    n = len(cat)
    pq.write_table(
        pa.table(
            {
                "rid": pa.array(range(n), pa.int64()),
                "hist": pa.array(hist, pa.list_(pa.int64())),
                "cat": pa.array(cat, pa.string()),
                "tags": pa.array(tags, pa.list_(pa.string())),
                "x": pa.array(x, pa.float64()),
            }
        ),
        path,
    )
    return path


@pytest.fixture
def train(tmp_path):
    return _write(
        tmp_path / "train.parquet",
        hist=[[1, 2, 2, 5], [2, 1], None, [9]],
        cat=["b", "a", "b", "c"],
        tags=[["x"], ["y", "x"], [], None],
        x=[1.0, 3.0, None, float("nan")],
    )


def test_vocabulary_rank_min_count_and_max_size(train):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), train)
    # hist counts: 2 -> 3, 1 -> 2, 5 -> 1, 9 -> 1; min_count 2 keeps [2, 1]
    assert spec.fitted["hist"].vocab == [2, 1]
    assert spec.num_embeddings("hist") == 2 + 2
    # cat counts: b 2, a 1, c 1 -> ties broken by value, max_size 2 keeps [b, a]
    assert spec.fitted["cat"].vocab == ["b", "a"]
    assert spec.fitted["hashed"].vocab is None and spec.num_embeddings("hashed") == 6
    stats = spec.stats()
    assert stats["hist"]["presence_rate"] == pytest.approx(0.75)
    assert stats["hist"]["truncated_rows"] == 1 and stats["hist"]["dropped_elements"] == 1
    # 7 ids, 5 and 9 are out of vocabulary
    assert stats["hist"]["oov_rate"] == pytest.approx(2 / 7)
    assert stats["hist"]["length_max"] == 4
    assert stats["num"]["missing_value_rate"] == {"x": 0.5}
    assert spec.fitted["num"].mean == [2.0] and spec.fitted["num"].std == [1.0]


def test_transform_maps_oov_and_keeps_last(train):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), train)
    batch = spec.transform(pq.read_table(train))
    # [1, 2, 2, 5] keep_last 3 -> [2, 2, 5] -> [2, 2, OOV]
    assert batch["hist"].row(0).tolist() == [FIRST_VOCAB_INDEX, FIRST_VOCAB_INDEX, OOV_INDEX]
    assert batch["hist"].row(3).tolist() == [OOV_INDEX]
    assert batch["cat"].values.tolist() == [2, 3, 2, OOV_INDEX]
    assert batch["hashed"].present.tolist() == [True, True, False, False]
    x = 1 + int(fnv1a64(pa.array(["x"]))[0] % 5)
    y = 1 + int(fnv1a64(pa.array(["y"]))[0] % 5)
    assert batch["hashed"].row(1).tolist() == sorted([x, y])
    assert batch["num"].values[:, 0].tolist() == [-1.0, 1.0, 0.0, 0.0]
    assert batch["num"].observed[:, 0].tolist() == [True, True, False, False]


def test_save_load_identical_transforms(train, tmp_path):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), train)
    spec.save(tmp_path / "spec.json")
    again = FeatureSpec.load(tmp_path / "spec.json")
    assert again.to_dict() == spec.to_dict()
    new = _write(tmp_path / "new.parquet", hist=[[7, 1, 2, 2, 2]], cat=["zzz"], tags=[["q", "x"]], x=[10.0])
    table = pq.read_table(new)
    a, b = spec.transform(table), again.transform(table)
    for name in spec.names:
        assert torch.equal(a[name].values, b[name].values) and torch.equal(a[name].present, b[name].present)
    assert a["cat"].values.tolist() == [OOV_INDEX]  # applying never refits
    assert again.fitted["cat"].vocab == ["b", "a"]


def test_unicode_vocabulary_round_trips(tmp_path):
    path = _write(tmp_path / "u.parquet", hist=[[1]], cat=["café"], tags=[["日本", "😀"]], x=[1.0])
    schema = dict(
        SCHEMA,
        modality=[
            dict(SCHEMA["modality"][1], max_size=None),
            SCHEMA["modality"][0],
            SCHEMA["modality"][2],
            SCHEMA["modality"][3],
        ],
    )
    schema["modality"][0].pop("max_size")
    spec = FeatureSpec.fit(parse_schema(schema), path)
    spec.save(tmp_path / "s.json")
    assert FeatureSpec.load(tmp_path / "s.json").fitted["cat"].vocab == ["café"]
    assert json.loads((tmp_path / "s.json").read_text())["format_version"] == 1


def test_hashes_are_fixed_functions():
    # Reference values: FNV-1a 64 of b"a" and splitmix64(0), as published for these functions.
    assert int(fnv1a64(pa.array(["a"]))[0]) == 0xAF63DC4C8601EC8C
    assert int(splitmix64(np.array([0], dtype=np.int64))[0]) == 0xE220A8397B1DCDAF
    mapper = IdMapper("int", hash_buckets=10)
    idx, oov = mapper.map(pa.array([0, 1, 0], pa.int64()))
    assert oov == 0 and idx[0] == idx[2] and 1 <= idx.min() and idx.max() <= 10


def test_int_ids_of_other_widths_map_like_int64(tmp_path):
    mapper = IdMapper("int", vocab=[5, 3])
    a, _ = mapper.map(pa.array([3, 5, 4], pa.int64()))
    b, oov = mapper.map(pa.array([3, 5, 4], pa.uint16()))
    assert a.tolist() == b.tolist() == [3, 2, OOV_INDEX] and oov == 1


def test_all_null_columns_of_type_null_mean_missing(train):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), train)
    table = pa.table(
        {
            "rid": pa.array([5, 6], pa.int64()),
            "hist": pa.nulls(2),
            "cat": pa.nulls(2),
            "tags": pa.nulls(2),
            "x": pa.nulls(2),
        }
    )
    batch = spec.transform(table)
    batch.validate()
    for name in spec.names:
        assert batch[name].present.tolist() == [False, False], name


def test_id_set_cut_keeps_known_ids_before_unknown_ones(tmp_path):
    schema = {"modality": [{"name": "tags", "kind": "id_set", "max_len": 2}]}
    train = tmp_path / "t.parquet"
    pq.write_table(pa.table({"tags": pa.array([[10, 20, 30], [10, 20], [10]], pa.list_(pa.int64()))}), train)
    spec = FeatureSpec.fit(parse_schema(schema), train)
    assert spec.fitted["tags"].vocab == [10, 20, 30]
    batch = spec.transform(pa.table({"tags": pa.array([[999, 20, 998, 10], [998, 30]], pa.list_(pa.int64()))}))
    assert batch["tags"].row(0).tolist() == [2, 3]  # 10 and 20 kept, the two unknown ids cut
    assert batch["tags"].row(1).tolist() == [4, OOV_INDEX]


def test_fit_across_files_where_one_id_column_is_all_null(tmp_path):
    schema = {"modality": [{"name": "tags", "kind": "id_set"}]}
    ints = tmp_path / "a.parquet"
    empty = tmp_path / "b.parquet"
    pq.write_table(pa.table({"tags": pa.array([[3, 4], [3]], pa.list_(pa.int64()))}), ints)
    pq.write_table(pa.table({"tags": pa.nulls(2)}), empty)  # what pandas writes for an all-missing column
    spec = FeatureSpec.fit(parse_schema(schema), [empty, ints])
    assert spec.fitted["tags"].id_type == "int" and spec.fitted["tags"].vocab == [3, 4]
    assert spec.stats()["tags"]["presence_rate"] == pytest.approx(0.5)


def test_subset_keeps_the_fitted_state_of_the_kept_modalities(train):
    spec = FeatureSpec.fit(parse_schema(SCHEMA), train)
    kept = spec.subset(["cat", "hist"])
    assert kept.names == ["cat", "hist"] and kept.fitted["hist"].vocab == spec.fitted["hist"].vocab
    batch = kept.transform(pq.read_table(train))
    assert batch.names == ["cat", "hist"] and torch.equal(
        batch["hist"].values, spec.transform(pq.read_table(train))["hist"].values
    )
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        spec.subset(["nope"])
