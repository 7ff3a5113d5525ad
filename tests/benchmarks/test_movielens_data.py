"""The MovieLens retrieval dataset built from the real data (realdata extra, about a minute)."""

import os
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        os.environ.get("DEEPSETS_REALDATA") != "1", reason="set DEEPSETS_REALDATA=1 (needs the realdata extra)"
    ),
]

MAX_HISTORY = 50


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from benchmarks.movielens.dataset import write_movielens_dataset

    work = tmp_path_factory.mktemp("movielens")
    return work, write_movielens_dataset(work, max_history=MAX_HISTORY, progress=False)


def _frames(work):
    return {name: pq.read_table(work / f"{name}.parquet").to_pandas() for name in ("items", "train", "valid", "test")}


def test_counts_and_items(built):
    work, info = built
    assert info["users"] == 671 and info["items"] == 9066
    assert info["rows"] == {"train": 100004 - 2 * 671, "valid": 671, "test": 671}
    items = pq.read_table(work / "items.parquet")
    ids = items.column("movie_id").to_numpy()
    assert ids.tolist() == sorted(set(ids.tolist())) and items.column("event_id").to_numpy().tolist() == ids.tolist()
    titles = items.column("title").combine_chunks().drop_null()
    assert set(np.diff(titles.offsets.to_numpy())) == {384}
    np.testing.assert_allclose(np.linalg.norm(titles.values.to_numpy().reshape(-1, 384), axis=1), 1.0, atol=1e-4)
    assert "" not in set(items.column("mpaa").drop_null().to_pylist())
    for share in info["item_presence"].values():
        assert 0.0 < share <= 1.0


def test_interactions_are_leave_last_out_with_past_only_history(built):
    work, _ = built
    f = _frames(work)
    rows = [f[s].assign(split=s) for s in ("train", "valid", "test")]
    everything = pd.concat(rows, ignore_index=True)
    assert everything["event_id"].is_unique
    genres = dict(zip(f["items"]["movie_id"], f["items"]["genres"]))
    for _, user in everything.sort_values(["user_id", "timestamp", "movie_id"]).groupby("user_id"):
        assert user["split"].tolist()[-2:] == ["valid", "test"] and set(user["split"].iloc[:-2]) == {"train"}
        movies = user["movie_id"].tolist()
        seen: set = set()  # genres of the movies before this row
        for position, (history, length, user_genres) in enumerate(
            zip(user["history"], user["history_length"], user["user_genres"])
        ):
            assert length == position
            if position == 0:
                assert history is None and user_genres is None
            else:
                assert history.tolist() == movies[max(0, position - MAX_HISTORY) : position]
                assert (user_genres.tolist() if user_genres is not None else []) == sorted(seen)
            seen.update(genres[movies[position]] if genres[movies[position]] is not None else ())


def test_item_columns_copied_from_items(built):
    from benchmarks.movielens.dataset import ITEM_COLUMNS

    work, _ = built
    items = pq.read_table(work / "items.parquet")
    ids = items.column("movie_id").to_numpy()
    for split in ("train", "valid", "test"):
        rows = pq.read_table(work / f"{split}.parquet")
        target = items.take(np.searchsorted(ids, rows.column("movie_id").to_numpy()))
        for c in ITEM_COLUMNS:
            assert rows.column(c).combine_chunks().equals(target.column(c).combine_chunks()), (split, c)


def test_schema_fits_and_every_file_reads(built):
    from benchmarks.movielens.dataset import ITEM_MODALITIES, QUERY_MODALITIES
    from deepsets.features.reader import ParquetBatchReader
    from deepsets.features.schema import load_schema
    from deepsets.features.spec import FeatureSpec

    work, info = built
    schema = load_schema(work / "schema.toml")
    assert schema.names == sorted(QUERY_MODALITIES + ITEM_MODALITIES) and schema.id_column == "event_id"
    spec = FeatureSpec.fit(schema, [str(work / "train.parquet")])
    for split in ("valid", "test"):
        reader = ParquetBatchReader(spec, [str(work / f"{split}.parquet")], batch_size=512)
        assert sum(b.num_rows for b in reader) == info["rows"][split]
    items = ParquetBatchReader(spec.subset(list(ITEM_MODALITIES)), [str(work / "items.parquet")], batch_size=512)
    batches = list(items)
    assert sum(b.num_rows for b in batches) == info["items"]
    assert (
        batches[0].ids[:3].tolist()
        == pq.read_table(work / "items.parquet", columns=["movie_id"]).column(0).to_pylist()[:3]
    )


def test_second_call_reuses_the_embeddings(built):
    from benchmarks.movielens.dataset import write_movielens_dataset

    work, info = built
    stamp = (work / "items.parquet").stat().st_mtime_ns
    start = time.perf_counter()
    again = write_movielens_dataset(work, max_history=MAX_HISTORY, progress=False)
    assert (work / "items.parquet").stat().st_mtime_ns == stamp
    assert again == info and time.perf_counter() - start < 30
