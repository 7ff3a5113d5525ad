"""``title_neighbors`` of the movies benchmark: the genres of the nearest training titles, with
a training row never its own neighbour (nothing here needs the realdata extra)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.movies.dataset import GENRES, SPLITS, write_title_neighbors


def write_splits(root, titles: dict, genres: dict):
    for split in SPLITS:
        t, g = np.asarray(titles[split], np.float32), np.asarray(genres[split], np.int8)
        table = pa.table(
            {
                "movie_id": pa.array(np.arange(len(t), dtype=np.int64)),
                "title": pa.FixedSizeListArray.from_arrays(pa.array(t.reshape(-1)), 384),
                "genres": pa.FixedSizeListArray.from_arrays(pa.array(g.reshape(-1)), len(GENRES)),
            }
        )
        (root / "data" / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / "data" / split / "part-00000.parquet")
    (root / "data" / "schema.toml").write_text('id_column = "movie_id"\n')


def neighbours(root, split):
    return np.stack(
        pq.read_table(root / "out" / split / "part-00000.parquet")
        .column("title_neighbors")
        .to_numpy(zero_copy_only=False)
    )


def axis(i, tilt=0.0):
    v = np.zeros(384)
    v[i], v[i + 1] = 1.0, tilt
    return v


def genre_row(*on):
    g = np.zeros(len(GENRES))
    g[list(on)] = 1
    return g


def test_nearest_training_titles_and_their_genres(tmp_path):
    titles = {
        "train": [axis(0), axis(0, 0.1), axis(5), axis(5, 0.2)],
        "valid": [axis(0, 0.03)],
        "test": [axis(5, 0.01)],
    }
    genres = {
        "train": [genre_row(0), genre_row(0, 1), genre_row(2), genre_row(3)],
        "valid": [genre_row(0)],
        "test": [genre_row(2)],
    }
    write_splits(tmp_path, titles, genres)
    write_title_neighbors(tmp_path / "data", tmp_path / "out", k=1)
    train, valid, test = (neighbours(tmp_path, s) for s in SPLITS)
    assert train.shape == (4, 16)
    # k = 1: each training row gets its pair's genres, never its own
    np.testing.assert_array_equal(train[:, :7], [genre_row(0, 1), genre_row(0), genre_row(3), genre_row(2)])
    np.testing.assert_array_equal(train[:, 7:14], train[:, :7])  # one neighbour: weight 1
    np.testing.assert_allclose(train[0, 14], 1 / np.sqrt(1.01), rtol=1e-6)  # cosine of (1, 0) and (1, 0.1)
    np.testing.assert_array_equal(valid[0, :7], genre_row(0))  # nearest to (1, 0.03): (1, 0), not (1, 0.1)
    np.testing.assert_array_equal(test[0, :7], genre_row(2))
    schema = (tmp_path / "out" / "schema.toml").read_text()
    assert 'name = "title_neighbors"' in schema and "dim = 16" in schema


@settings(max_examples=20, deadline=None)
@given(st.integers(3, 12), st.integers(0, 2**31 - 1))
def test_every_other_training_row_is_averaged_leave_one_out(tmp_path_factory, rows, seed):
    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("neighbours")
    titles = {s: rng.normal(size=(rows, 384)) for s in SPLITS}
    genres = {s: rng.integers(0, 2, size=(rows, len(GENRES))) for s in SPLITS}
    write_splits(root, titles, genres)
    write_title_neighbors(root / "data", root / "out", k=rows - 1)
    train, valid = neighbours(root, "train"), neighbours(root, "valid")
    total = genres["train"].sum(0)
    # with k = rows - 1 a training row's neighbours are all the other training rows
    np.testing.assert_allclose(train[:, :7], (total - genres["train"]) / (rows - 1), atol=1e-6)
    assert ((valid[:, :7] >= 0) & (valid[:, :7] <= 1)).all()
    np.testing.assert_allclose(valid[:, 7:14].max(1) <= 1 + 1e-6, True)
    assert (train[:, 14] >= train[:, 15] - 1e-6).all()  # the largest cosine is at least the mean
