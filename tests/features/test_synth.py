"""Tests of the recsys-6 reference workload generator (features/synth.py)."""

from __future__ import annotations

import json
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.features import synth
from deepsets.features.synth_signals import MODALITIES, PRESENCE, WEIGHTS

ROWS, ROWS_PER_FILE, CHUNK_ROWS, SEED = 20_000, 8_000, 3_000, 7

EXPECTED_TYPES = {
    "item_id": pa.int64(),
    "query_id": pa.int64(),
    "image": pa.list_(pa.float32()),
    "title": pa.list_(pa.float32()),
    "history": pa.list_(pa.int64()),
    "frames": pa.list_(pa.list_(pa.float32(), 64)),
    "tags": pa.list_(pa.int64()),
    "country": pa.string(),
    **{f"profile_{j}": pa.float64() for j in range(8)},
    "clicked": pa.int8(),
    "labels": pa.list_(pa.int8(), 5),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("recsys6")
    summary = synth.generate(ROWS, out, seed=SEED, rows_per_file=ROWS_PER_FILE, chunk_rows=CHUNK_ROWS, progress=False)
    return summary, out


@pytest.fixture(scope="module")
def table(written) -> pa.Table:
    return synth.read_parts(written[1])


def _lengths(table: pa.Table, name: str) -> np.ndarray:
    return np.diff(table.column(name).combine_chunks().offsets.to_numpy())


def _valid(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).is_valid().to_numpy()


def _check_queries(query_id: np.ndarray) -> None:
    sizes = np.bincount(query_id)
    assert np.all(np.diff(query_id) >= 0) and query_id[0] == 0
    assert np.all((sizes[:-1] >= 10) & (sizes[:-1] <= 50)), sizes
    assert 1 <= sizes[-1] <= 50


def test_written_schema_is_exactly_the_spec(written):
    _, out = written
    for path in sorted(out.glob("part-*.parquet")):
        schema = pq.read_schema(path)
        assert schema.names == list(EXPECTED_TYPES)
        assert {f.name: f.type for f in schema} == EXPECTED_TYPES
        assert schema.equals(synth.SCHEMA)
    assert (out / "schema.toml").read_text() == synth.SCHEMA_TOML
    spec = tomllib.loads(synth.SCHEMA_TOML)
    assert spec["id_column"] == "item_id"
    kinds = {m["name"]: m["kind"] for m in spec["modality"]}
    assert kinds == {
        "image": "dense",
        "title": "dense",
        "history": "id_sequence",
        "frames": "dense_sequence",
        "tags": "id_set",
        "country": "categorical",
        "profile": "numeric",
    }
    assert spec["modality"][-1]["columns"] == [f"profile_{j}" for j in range(8)]


def test_summary_files_and_row_counts(written, table):
    summary, out = written
    assert summary["rows"] == ROWS and summary["out_dir"] == str(out) and summary["seconds"] > 0
    assert summary["files"] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert sorted(p.name for p in out.glob("part-*.parquet")) == summary["files"]
    counts = [pq.ParquetFile(out / f).metadata.num_rows for f in summary["files"]]
    assert counts == [8_000, 8_000, 4_000]
    assert table.num_rows == ROWS
    np.testing.assert_array_equal(table["item_id"].to_numpy(), np.arange(ROWS))


def test_query_groups_span_chunks_and_files(table):
    query_id = table["query_id"].to_numpy()
    _check_queries(query_id)
    assert 20_000 / 50 <= query_id[-1] + 1 <= 20_000 / 10


def test_presence_rates(table):
    present = synth.presence(table)
    for modality, rate in PRESENCE.items():
        assert abs(present[modality].mean() - rate) < 0.02, modality


def test_dense_and_sequence_shapes(table):
    title = _lengths(table, "title")
    assert set(title[_valid(table, "title")]) == {384} and set(title[~_valid(table, "title")]) == {0}
    frames = _lengths(table, "frames")[_valid(table, "frames")]
    assert frames.min() == 1 and frames.max() == 32
    assert abs(frames.mean() - 16.5) < 0.5


def test_history_lengths_ids_and_empty_lists(table):
    lengths = _lengths(table, "history")
    valid = _valid(table, "history")
    present = synth.presence(table)["history"]
    assert 18 <= np.median(lengths[present]) <= 22
    assert lengths.max() <= 500 and lengths[present].min() >= 1
    empty = valid & (lengths == 0)
    assert empty.any() and not present[empty].any()  # an empty list counts as missing
    assert abs(empty.mean() - 0.15 * 0.2) < 0.01
    assert abs((~valid).mean() - 0.15 * 0.8) < 0.015
    ids = table["history"].combine_chunks().values.to_numpy()
    assert ids.min() >= 0 and ids.max() < 50_000
    top_share = np.bincount(ids).max() / len(ids)
    assert top_share > 0.1  # Zipf-like: the most popular item is a large share


def test_tags_are_distinct_sets(table):
    tags = table["tags"].combine_chunks()
    lengths = _lengths(table, "tags")[_valid(table, "tags")]
    assert lengths.min() == 1 and lengths.max() == 10
    ids = tags.values.to_numpy()
    assert ids.min() >= 0 and ids.max() < 1_000
    rows = pc.list_parent_indices(tags).to_numpy()
    assert len(np.unique(rows * 1_000 + ids)) == len(ids)  # no id twice in a row


def test_country_is_skewed_over_200_codes(table):
    codes = pc.drop_null(table["country"]).to_numpy(zero_copy_only=False)
    values, counts = np.unique(codes, return_counts=True)
    assert set(values) <= {f"C{c:03d}" for c in range(200)} and len(values) > 100
    assert counts.max() / len(codes) > 5 / 200


def test_profile_nan_and_group_missing(table):
    valid = np.stack([_valid(table, f"profile_{j}") for j in range(8)])
    assert np.all(valid == valid[0])  # the whole group is missing together
    values = np.stack([table[f"profile_{j}"].to_numpy() for j in range(8)])[:, valid[0]]
    assert abs(np.isnan(values).mean() - 0.05) < 0.01  # NaN inside present rows, not null


def test_truth_json(written):
    truth = json.loads((written[1] / "truth.json").read_text())
    assert truth["seed"] == SEED and truth["rows"] == ROWS
    assert truth["weights"] == WEIGHTS and truth["presence"] == PRESENCE
    for m in MODALITIES:
        assert truth["contribution"][m] == pytest.approx(WEIGHTS[m] * PRESENCE[m])
    contributions = [truth["contribution"][m] for m in truth["ranking"]]
    assert contributions == sorted(contributions, reverse=True)
    assert truth["ranking"] == ["history", "image", "title", "tags", "country", "frames", "profile"]
    assert truth["multilabel_modalities"] == list(MODALITIES)
    assert np.array(truth["multilabel_mixing"]).shape == (5, 7)


def test_signals_are_standardized_and_zero_when_missing(table):
    s = synth.signals(table, synth.make_tables(SEED))
    present = synth.presence(table)
    for m in MODALITIES:
        assert np.all(s[m][~present[m]] == 0.0), m
        assert abs(s[m][present[m]].mean()) < 0.05, m
        assert abs(s[m][present[m]].std() - 1.0) < 0.05, m


def test_planted_click_signal_is_recoverable(table):
    """Logistic regression on the planted signals recovers the planted weights and bias."""
    s = synth.signals(table, synth.make_tables(SEED))
    clicked = table["clicked"].to_numpy().astype(np.float64)
    assert 0.25 < clicked.mean() < 0.35
    history = s["history"]
    top, bottom = history >= np.quantile(history, 0.8), history <= np.quantile(history, 0.2)
    assert clicked[top].mean() - clicked[bottom].mean() > 0.3
    x = np.column_stack([np.ones(len(clicked))] + [s[m] for m in MODALITIES])
    beta = np.zeros(x.shape[1])
    for _ in range(25):  # Newton / IRLS
        p = 1.0 / (1.0 + np.exp(-x @ beta))
        beta += np.linalg.solve(x.T @ (x * (p * (1 - p))[:, None]), x.T @ (clicked - p))
    expected = [synth.make_tables(SEED).bias] + [WEIGHTS[m] for m in MODALITIES]
    np.testing.assert_allclose(beta, expected, atol=0.15)


def test_multilabel_targets(table):
    tables = synth.make_tables(SEED)
    s = synth.signals(table, tables)
    labels = table["labels"].combine_chunks().values.to_numpy().reshape(-1, 5)
    assert set(np.unique(labels)) == {0, 1}
    assert np.all((labels.mean(axis=0) > 0.15) & (labels.mean(axis=0) < 0.5))
    mixed = np.column_stack([s[m] for m in MODALITIES]) @ tables.mixing.T  # (rows, 5)
    for k in range(5):
        assert np.corrcoef(labels[:, k], mixed[:, k])[0, 1] > 0.5, k


def test_same_seed_same_bytes_other_seed_other_values(tmp_path):
    args = dict(rows=1_500, rows_per_file=1_000, chunk_rows=400, progress=False)
    a, b, c = (
        synth.generate(out_dir=tmp_path / name, seed=seed, **args) for name, seed in (("a", 3), ("b", 3), ("c", 4))
    )
    for name in a["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert b["files"] == c["files"] == ["part-00000.parquet", "part-00001.parquet"]
    ta, tc = synth.read_parts(tmp_path / "a"), synth.read_parts(tmp_path / "c")
    assert not ta["image"].equals(tc["image"]) and not ta["history"].equals(tc["history"])


@pytest.mark.parametrize("arg", ["rows", "rows_per_file", "chunk_rows"])
def test_rejects_non_positive_sizes(tmp_path, arg):
    kwargs = {"rows": 10, "rows_per_file": 10, "chunk_rows": 10, arg: 0}
    with pytest.raises(ValueError, match=f"{arg} must be >= 1, got 0"):
        synth.generate(out_dir=tmp_path, progress=False, **kwargs)


def test_refuses_existing_parts_unless_overwrite(tmp_path):
    synth.generate(30, tmp_path, rows_per_file=10, progress=False)
    with pytest.raises(
        ValueError, match=r"already holds 3 part file\(s\).*pass --overwrite \(overwrite=True from Python\)"
    ):
        synth.generate(30, tmp_path, progress=False)
    summary = synth.generate(25, tmp_path, progress=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.glob("part-*.parquet")) == summary["files"]
    assert synth.read_parts(tmp_path).num_rows == 25


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 120), rows_per_file=st.integers(1, 50), chunk_rows=st.integers(1, 50))
def test_any_sizes_give_all_rows_in_order(rows, rows_per_file, chunk_rows):
    with tempfile.TemporaryDirectory() as tmp:
        summary = synth.generate(rows, tmp, seed=1, rows_per_file=rows_per_file, chunk_rows=chunk_rows, progress=False)
        assert len(summary["files"]) == -(-rows // rows_per_file)
        table = synth.read_parts(tmp)
    assert table.num_rows == rows
    np.testing.assert_array_equal(table["item_id"].to_numpy(), np.arange(rows))
    _check_queries(table["query_id"].to_numpy())


def test_chunks_become_row_groups(written):
    """chunk_rows < rows_per_file: each file holds several row groups of at most chunk_rows."""
    summary, out = written
    groups = []
    for name in summary["files"]:
        meta = pq.ParquetFile(out / name).metadata
        groups.append([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    assert groups == [[3_000, 3_000, 2_000], [3_000, 3_000, 2_000], [3_000, 1_000]]
