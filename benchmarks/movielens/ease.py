"""EASE as two tower features for the MovieLens two-tower benchmark, fitted without leaking a
training row's own interaction.

    write_ease_features(Path("work/data"), Path("work/data_ease"), l2=200.0)

EASE (Steck 2019) scores a query by ``x B``: ``x`` the 0/1 row of the movies the user rated
before, ``B`` the (I, I) item-item weights (``benchmarks.movielens.baselines.ease_weights``).
A two-tower model scores by a dot product of one vector per side, so ``B`` is projected on
``V``, its top ``rank`` right singular vectors (fitted on every training interaction):

- item side, ``ease_item``: the movie's row of ``V`` (times sqrt(I), so entries are about 1);
- query side, ``ease_profile``: ``x B' V`` (divided by the training rows' standard deviation),
  where ``x`` holds every movie the user rated before the row (not only the last 50 of
  ``history``), so ``ease_profile . ease_item`` is the EASE score of the movie, projected;
- query side, ``ease_recent`` (with a ``decay``): the same with ``x`` weighted by recency,
  ``decay ** age`` (``age`` = ratings since; 0 for the last one), the recency-weighted EASE
  score projected (``benchmarks.movielens.baselines.history_rows``).

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

from benchmarks.movielens.baselines import ease_weights, history_rows

SPLITS = ("train", "valid", "test")
RANK = 64
FOLDS = 5
QUERY_MODALITY, ITEM_MODALITY, RECENT_MODALITY = "ease_profile", "ease_item", "ease_recent"


def fold_of(rows: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """The fold of each interaction in global (event_id) order: ``(rows,)`` ints in [0, folds)."""
    return np.random.default_rng(seed).integers(0, folds, size=rows)


def earlier_items(users: np.ndarray, items: np.ndarray, num_items: int, decay: float | None = None) -> sp.csr_matrix:
    """Row r: the items of row r's user in the rows before r (rows sorted by user, then time),
    as ``history_rows`` writes a history: a 0/1 ``(rows, num_items)`` matrix, or with ``decay``
    each earlier rating weighing ``decay ** age`` (``age`` = 0 for the row just before r)."""
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(users)]))  # (rows,) the first row of each row's user
    return history_rows([items[first[r] : r] for r in range(len(users))], num_items, decay)


def ease_projections(
    users,
    items,
    split,
    num_items: int,
    l2: float,
    rank: int = RANK,
    folds: int = FOLDS,
    seed: int = 0,
    decay: float | None = None,
):
    """``(profiles (N, rank), item_vectors (I, rank), recent (N, rank) or None)`` over
    interactions in global order; ``recent`` (with ``decay``) projects the recency-weighted
    history the same way.

    Args:
        users, items: ``(N,)`` user ids and item indices, sorted by user, then time.
        split: ``(N,)`` 0 for a training interaction, anything else for validation and test.
        num_items: ``I``.
        l2: the EASE penalty.
        decay: the recency weight of ``recent`` (None: no ``recent``).

    Raises:
        ValueError: for a rank outside [1, num_items], fewer than 2 folds or a decay outside (0, 1].
    """
    import torch

    if not 1 <= rank <= num_items or folds < 2 or (decay is not None and not 0 < decay <= 1):
        raise ValueError(
            f"need 1 <= rank <= {num_items} (got {rank}), folds >= 2 (got {folds}) and a decay in (0, 1] (got {decay})"
        )
    train = np.asarray(split) == 0
    users, items = np.asarray(users), np.asarray(items)
    sides = {"profiles": earlier_items(users, items, num_items)}  # (N, I) each
    if decay is not None:
        sides["recent"] = earlier_items(users, items, num_items, decay)
    weights = ease_weights(users[train], items[train], num_items, l2)  # (I, I)
    _, _, basis = torch.svd_lowrank(torch.from_numpy(weights), q=rank, niter=4)
    basis = basis.numpy()  # (I, rank), orthonormal columns
    projected = {name: np.zeros((len(users), rank)) for name in sides}
    projection = weights @ basis  # (I, rank)
    for name, earlier in sides.items():
        projected[name][~train] = earlier[~train] @ projection
    fold = fold_of(len(users), folds, seed)
    for f in range(folds):
        fit = train & (fold != f)
        scored = train & (fold == f)
        projection = ease_weights(users[fit], items[fit], num_items, l2) @ basis  # (I, rank)
        for name, earlier in sides.items():
            projected[name][scored] = earlier[scored] @ projection
    scaled = {name: (p / (p[train].std() or 1.0)).astype(np.float32) for name, p in projected.items()}
    return scaled["profiles"], (basis * np.sqrt(num_items)).astype(np.float32), scaled.get("recent")


def write_ease_features(
    data: Path, out: Path, l2: float, rank: int = RANK, folds: int = FOLDS, decay: float | None = None
) -> Path:
    """Copy the MovieLens dataset in ``data`` (``benchmarks.movielens.dataset``) to ``out`` with
    ``ease_profile`` (and with ``decay`` ``ease_recent``) on every interaction row and
    ``ease_item`` on items.parquet and on every row's target movie; the schema gains them as
    ``dense`` modalities. Reused if ``out`` already has them for the same ``l2``, ``rank``,
    ``folds`` and ``decay``; returns ``out``."""
    data, out = Path(data), Path(out)
    stamp = f"l2={l2:g} rank={rank} folds={folds}" + (f" decay={decay:g}" if decay is not None else "")
    if (out / "ease.txt").exists() and (out / "ease.txt").read_text() == stamp:
        return out
    items = pq.read_table(data / "items.parquet")
    item_ids = items["movie_id"].to_numpy()
    tables = {s: pq.read_table(data / f"{s}.parquet") for s in SPLITS}
    events = np.concatenate([t["event_id"].to_numpy() for t in tables.values()])
    order = np.argsort(events, kind="stable")  # the global order: by user, then time
    column = lambda name: np.concatenate([t[name].to_numpy() for t in tables.values()])[order]  # noqa: E731
    split = np.concatenate([np.full(t.num_rows, k) for k, t in enumerate(tables.values())])[order]
    profiles, vectors, recent = ease_projections(
        column("user_id"),
        np.searchsorted(item_ids, column("movie_id")),
        split,
        len(item_ids),
        l2,
        rank,
        folds,
        decay=decay,
    )
    events = events[order]
    out.mkdir(parents=True, exist_ok=True)
    fixed = lambda a: pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])  # noqa: E731
    pq.write_table(items.append_column(ITEM_MODALITY, fixed(vectors)), out / "items.parquet")
    for name, table in tables.items():
        rows = np.searchsorted(events, table["event_id"].to_numpy())
        target = np.searchsorted(item_ids, table["movie_id"].to_numpy())
        table = table.append_column(QUERY_MODALITY, fixed(profiles[rows])).append_column(
            ITEM_MODALITY, fixed(vectors[target])
        )
        if recent is not None:
            table = table.append_column(RECENT_MODALITY, fixed(recent[rows]))
        pq.write_table(table, out / f"{name}.parquet")
    added = (QUERY_MODALITY, ITEM_MODALITY, *([RECENT_MODALITY] if recent is not None else []))
    extra = "".join(f'\n[[modality]]\nname = "{name}"\nkind = "dense"\ndim = {rank}\n' for name in added)
    (out / "schema.toml").write_text((data / "schema.toml").read_text() + extra)
    (out / "ease.txt").write_text(stamp)
    return out


def two_tower_data(work: Path) -> Path:
    """The folder ``benchmarks.movielens.benchmark`` trained its two-tower models on: ``work/data_ease``
    when it holds the EASE features (a superset of ``work/data``'s columns), else ``work/data``."""
    work = Path(work)
    return work / "data_ease" if (work / "data_ease" / "ease.txt").exists() else work / "data"


def has_recent(folder: Path) -> bool:
    """Whether the EASE features in ``folder`` include ``ease_recent`` (written with a decay)."""
    stamp = Path(folder) / "ease.txt"
    return stamp.exists() and "decay=" in stamp.read_text()


def two_tower_run(
    negatives: str,
    seed,
    epochs: int,
    ease: bool,
    dim: int = 64,
    rank: int = RANK,
    recent: bool = True,
    shortcut: bool = False,
) -> str:
    """The run name of a two-tower model of ``benchmarks.movielens.benchmark`` (``seed`` may be a glob's
    ``*``); the ``-ease`` runs were trained on the EASE features of ``ease_folder``, ``-ease-rec``
    ones also on ``ease_recent``, ``-ease-rec-sc`` ones with the ``ease_recent`` / ``ease_item``
    shortcut. A model width other than 64 adds ``-d<dim>``, an EASE rank other than ``RANK``
    ``-r<rank>``."""
    features = ("-ease" + ("-rec" if recent else "") + ("-sc" if recent and shortcut else "")) if ease else ""
    variant = (f"-d{dim}" if dim != 64 else "") + (f"-r{rank}" if ease and rank != RANK else "")
    return f"two-tower-{negatives}{features}{variant}-s{seed}-e{epochs}"


def ease_folder(work: Path, rank: int = RANK, recent: bool = True) -> Path:
    """Where ``benchmarks.movielens.benchmark`` writes the EASE features of ``rank``: ``work/data_ease``
    for the default rank with ``ease_recent`` (what ``two_tower_data`` reads); another rank adds
    ``_r<rank>``, features without ``ease_recent`` ``_plain``."""
    return Path(work) / ("data_ease" + (f"_r{rank}" if rank != RANK else "") + ("" if recent else "_plain"))


__all__ = [
    "write_ease_features",
    "two_tower_data",
    "has_recent",
    "two_tower_run",
    "ease_folder",
    "ease_projections",
    "earlier_items",
    "fold_of",
    "QUERY_MODALITY",
    "ITEM_MODALITY",
    "RECENT_MODALITY",
    "RANK",
    "FOLDS",
]
