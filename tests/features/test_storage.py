"""Paths on object storage, against a real S3-compatible server (``s3_server``: moto over HTTP on
127.0.0.1; nothing in this process is mocked): listing, globbing, whole-object writes, and the
feature layer (fit, checked open, sharded reading) reading ``s3://`` exactly as it reads files."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.features import storage
from deepsets.features.errors import DataError
from deepsets.features.files import resolve_inputs
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec


@pytest.fixture
def prefix(s3_server):
    """A fresh key prefix in the bucket for each test."""
    return f"s3://deepsets/test-{uuid.uuid4().hex[:8]}"


def put_table(uri: str, table: pa.Table) -> str:
    store, inner = storage.filesystem(uri)
    with store.open_output_stream(inner) as handle:
        pq.write_table(table, handle)
    return uri


def same_numbers(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_numbers(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_numbers(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b


def test_listing_and_globbing_follow_local_rules(prefix):
    table = pa.table({"x": [1, 2]})
    for key in ("a/p0.parquet", "a/p1.parquet", "a/deep/p2.parquet", "a/.hidden.parquet", "a/notes.txt", "b/q.parquet"):
        put_table(f"{prefix}/{key}", table)
    assert resolve_inputs(f"{prefix}/a") == [
        f"{prefix}/a/deep/p2.parquet",
        f"{prefix}/a/p0.parquet",
        f"{prefix}/a/p1.parquet",
    ]
    assert resolve_inputs(f"{prefix}/a/*.parquet") == [f"{prefix}/a/p0.parquet", f"{prefix}/a/p1.parquet"]
    assert resolve_inputs(f"{prefix}/**/q.parquet") == [f"{prefix}/b/q.parquet"]
    assert resolve_inputs([f"{prefix}/b/q.parquet", f"{prefix}/b"]) == [f"{prefix}/b/q.parquet"]  # once, in order
    with pytest.raises(DataError, match="does not exist"):
        resolve_inputs(f"{prefix}/nothing-here")
    with pytest.raises(DataError, match="no input files match"):
        resolve_inputs(f"{prefix}/a/*.csv")
    with pytest.raises(DataError, match="input 's3://no-such-bucket-x/data' does not exist"):
        resolve_inputs("s3://no-such-bucket-x/data")


def test_a_whole_object_write_is_one_object_and_reads_back(prefix):
    uri = f"{prefix}/run/record.json"
    storage.write_text(uri, json.dumps({"a": 1}))
    assert json.loads(storage.read_text(uri)) == {"a": 1}
    assert storage.children(f"{prefix}/run") == [("record.json", False)]  # no temp object beside it
    assert storage.is_file(uri) and storage.is_dir(f"{prefix}/run") and not storage.exists(f"{prefix}/run/other")
    assert storage.size_and_mtime_ns(uri)[0] == len(json.dumps({"a": 1}))
    storage.delete(uri)
    storage.delete(uri)  # missing_ok
    assert not storage.exists(uri)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_deleting_a_folder_removes_what_it_holds_and_nothing_beside_it(prefix, tmp_path, where):
    base = prefix if where == "s3" else str(tmp_path)
    for key in ("gone/a.json", "gone/deep/b.json", "kept/c.json", "gone-not/d.json"):
        storage.make_dirs(storage.join(base, *key.split("/")[:-1]))
        storage.write_text(storage.join(base, *key.split("/")), "{}")
    storage.delete_folder(storage.join(base, "gone"))
    storage.delete_folder(storage.join(base, "never-there"))  # absent: nothing to do
    assert sorted(name for name, _ in storage.children(base)) == ["gone-not", "kept"]
    assert storage.exists(storage.join(base, "kept", "c.json"))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "x.parquet", "y.parquet"]), min_size=1, max_size=4),
    st.lists(st.sampled_from(["*", "**", "a", "?.parquet", "*.parquet"]), min_size=1, max_size=4),
)
def test_uri_glob_matching_agrees_with_local_glob(tmp_path_factory, names, pattern):
    """The object-store glob matches a key exactly when the local glob matches the same path."""
    import glob as local_glob
    import os

    root = tmp_path_factory.mktemp("g")
    path = os.path.join(root, *names)
    if os.path.isdir(path) or any(os.path.isfile(os.path.join(root, *names[:i])) for i in range(1, len(names))):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        open(path, "w").close()
    local = set(local_glob.glob(os.path.join(root, *pattern), recursive=True))
    assert (path in local) == storage._matches(names, pattern) or os.path.isdir(path)


def test_fit_open_and_sharded_reading_on_s3_equal_the_local_files(prefix, demo_data):
    local_files = sorted(str(p) for p in (demo_data / "train").glob("*.parquet"))[:2]
    uris = [f"{prefix}/train/{i}.parquet" for i in range(len(local_files))]
    for uri, path in zip(uris, local_files):
        storage.write_bytes(uri, open(path, "rb").read())  # the same bytes: the same row groups
    storage.write_text(f"{prefix}/schema.toml", (demo_data / "schema.toml").read_text())
    schema = load_schema(f"{prefix}/schema.toml")
    remote, local = FeatureSpec.fit(schema, f"{prefix}/train"), FeatureSpec.fit(schema, local_files)
    assert same_numbers(
        remote.to_dict()["fitted"], local.to_dict()["fitted"]
    )  # polars sums in its own order: 1e-15 apart
    remote.save(f"{prefix}/spec.json")
    assert FeatureSpec.load(f"{prefix}/spec.json").to_dict() == remote.to_dict()
    assert remote.open_checked(uris[0], []).metadata.num_rows == pq.read_metadata(local_files[0]).num_rows

    def ids(paths, rank, world):
        reader = ParquetBatchReader(remote, paths, batch_size=128, shard=(rank, world), shuffle_seed=3)
        return np.concatenate([np.asarray(b.ids) for b in reader])

    for world in (1, 2):
        assert np.array_equal(
            np.concatenate([ids(uris, r, world) for r in range(world)]),
            np.concatenate([ids(local_files, r, world) for r in range(world)]),
        )
