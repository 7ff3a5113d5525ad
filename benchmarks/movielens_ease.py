"""EASE as two tower features for the MovieLens two-tower benchmark, fitted without leaking a
training row's own interaction.

    write_ease_features(Path("work/data"), Path("work/data_ease"), l2=200.0)

EASE (Steck 2019) scores a query by ``x B``: ``x`` the 0/1 row of the movies the user rated
before, ``B`` the (I, I) item-item weights (``benchmarks.movielens_baselines.ease_weights``).
A two-tower model scores by a dot product of one vector per side, so ``B`` is projected on
``V``, its top ``rank`` right singular vectors (fitted on every training interaction):

- item side, ``ease_item``: the movie's row of ``V`` (times sqrt(I), so entries are about 1);
- query side, ``ease_profile``: ``x B' V`` (divided by the training rows' standard deviation),
  where ``x`` holds every movie the user rated before the row (not only the last 50 of
  ``history``), so ``ease_profile . ease_item`` is the EASE score of the movie, projected.

For a validation or test row, ``B'`` is fitted on all training interactions. A training row's
own interaction must not be in the fit that scores it, or the model learns to trust a feature
that is sharper in training than at serving time: the training interactions are cut into
``folds`` at random, and a training row's ``B'`` is fitted on the other folds. Takes about
2 minutes on 2 cores (six 9,066 x 9,066 inversions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from benchmarks.movielens_baselines import ease_weights

SPLITS = ("train", "valid", "test")
RANK = 64
FOLDS = 5
QUERY_MODALITY, ITEM_MODALITY = "ease_profile", "ease_item"


def fold_of(rows: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """The fold of each interaction in global (event_id) order: ``(rows,)`` ints in [0, folds)."""
    return np.random.default_rng(seed).integers(0, folds, size=rows)


def earlier_items(users: np.ndarray, items: np.ndarray, num_items: int) -> sp.csr_matrix:
    """Row r: the items of row r's user in the rows before r (rows sorted by user, then time),
    as a 0/1 ``(rows, num_items)`` matrix."""
    rows, cols = [], []
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(users)]):
        for r in range(start + 1, end):
            rows.append(np.full(r - start, r))
            cols.append(items[start:r])
    rows, cols = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (rows, cols))
    matrix = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(users), num_items))
    matrix.data[:] = 1.0  # a movie rated twice counts once
    return matrix


def ease_projections(users, items, split, num_items: int, l2: float, rank: int = RANK, folds: int = FOLDS, seed: int = 0):
    """``(profiles (N, rank), item_vectors (I, rank))`` over interactions in global order.

    Args:
        users, items: ``(N,)`` user ids and item indices, sorted by user, then time.
        split: ``(N,)`` 0 for a training interaction, anything else for validation and test.
        num_items: ``I``.
        l2: the EASE penalty.

    Raises:
        ValueError: for a rank outside [1, num_items] or fewer than 2 folds.
    """
    import torch

    if not 1 <= rank <= num_items or folds < 2:
        raise ValueError(f"need 1 <= rank <= {num_items} (got {rank}) and folds >= 2 (got {folds})")
    train = np.asarray(split) == 0
    users, items = np.asarray(users), np.asarray(items)
    earlier = earlier_items(users, items, num_items)  # (N, I)
    weights = ease_weights(users[train], items[train], num_items, l2)  # (I, I)
    _, _, basis = torch.svd_lowrank(torch.from_numpy(weights), q=rank, niter=4)
    basis = basis.numpy()  # (I, rank), orthonormal columns
    profiles = np.zeros((len(users), rank))
    profiles[~train] = earlier[~train] @ (weights @ basis)
    fold = fold_of(len(users), folds, seed)
    for f in range(folds):
        fit = train & (fold != f)
        scored = train & (fold == f)
        profiles[scored] = earlier[scored] @ (ease_weights(users[fit], items[fit], num_items, l2) @ basis)
    scale = profiles[train].std() or 1.0
    return (profiles / scale).astype(np.float32), (basis * np.sqrt(num_items)).astype(np.float32)


def write_ease_features(data: Path, out: Path, l2: float, rank: int = RANK, folds: int = FOLDS) -> Path:
    """Copy the MovieLens dataset in ``data`` (``benchmarks.movielens_data``) to ``out`` with
    ``ease_profile`` on every interaction row and ``ease_item`` on items.parquet and on every
    row's target movie; the schema gains both as ``dense`` modalities. Reused if ``out``
    already has them for the same ``l2``, ``rank`` and ``folds``; returns ``out``."""
    data, out = Path(data), Path(out)
    stamp = f"l2={l2:g} rank={rank} folds={folds}"
    if (out / "ease.txt").exists() and (out / "ease.txt").read_text() == stamp:
        return out
    items = pq.read_table(data / "items.parquet")
    item_ids = items["movie_id"].to_numpy()
    tables = {s: pq.read_table(data / f"{s}.parquet") for s in SPLITS}
    events = np.concatenate([t["event_id"].to_numpy() for t in tables.values()])
    order = np.argsort(events, kind="stable")  # the global order: by user, then time
    column = lambda name: np.concatenate([t[name].to_numpy() for t in tables.values()])[order]  # noqa: E731
    split = np.concatenate([np.full(t.num_rows, k) for k, t in enumerate(tables.values())])[order]
    profiles, vectors = ease_projections(column("user_id"), np.searchsorted(item_ids, column("movie_id")), split, len(item_ids), l2, rank, folds)
    events = events[order]
    out.mkdir(parents=True, exist_ok=True)
    fixed = lambda a: pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])  # noqa: E731
    pq.write_table(items.append_column(ITEM_MODALITY, fixed(vectors)), out / "items.parquet")
    for name, table in tables.items():
        rows = np.searchsorted(events, table["event_id"].to_numpy())
        target = np.searchsorted(item_ids, table["movie_id"].to_numpy())
        pq.write_table(table.append_column(QUERY_MODALITY, fixed(profiles[rows])).append_column(ITEM_MODALITY, fixed(vectors[target])), out / f"{name}.parquet")
    extra = "".join(f'\n[[modality]]\nname = "{name}"\nkind = "dense"\ndim = {rank}\n' for name in (QUERY_MODALITY, ITEM_MODALITY))
    (out / "schema.toml").write_text((data / "schema.toml").read_text() + extra)
    (out / "ease.txt").write_text(stamp)
    return out


def two_tower_data(work: Path) -> Path:
    """The folder ``benchmarks.movielens`` trained its two-tower models on: ``work/data_ease``
    when it holds the EASE features (a superset of ``work/data``'s columns), else ``work/data``."""
    work = Path(work)
    return work / "data_ease" if (work / "data_ease" / "ease.txt").exists() else work / "data"


def two_tower_run(negatives: str, seed, epochs: int, ease: bool, dim: int = 64, rank: int = RANK) -> str:
    """The run name of a two-tower model of ``benchmarks.movielens`` (``seed`` may be a glob's
    ``*``); the ``-ease`` runs were trained on ``two_tower_data``'s EASE features. A model
    width other than 64 adds ``-d<dim>``, an EASE rank other than ``RANK`` ``-r<rank>``."""
    variant = (f"-d{dim}" if dim != 64 else "") + (f"-r{rank}" if ease and rank != RANK else "")
    return f"two-tower-{negatives}{'-ease' if ease else ''}{variant}-s{seed}-e{epochs}"


def ease_folder(work: Path, rank: int = RANK) -> Path:
    """Where ``benchmarks.movielens`` writes the EASE features of ``rank``: ``work/data_ease``
    for the default rank (what ``two_tower_data`` reads), ``work/data_ease_r<rank>`` else."""
    return Path(work) / ("data_ease" if rank == RANK else f"data_ease_r{rank}")


__all__ = ["write_ease_features", "two_tower_data", "two_tower_run", "ease_folder", "ease_projections", "earlier_items", "fold_of", "QUERY_MODALITY", "ITEM_MODALITY", "RANK", "FOLDS"]
