"""What a user would pick instead of set fusion for movie genres, on the same splits: one
HistGradientBoosting model per genre, and logistic regression, on the concatenated features.

Features: the title embedding (384) and the tabular columns (r1..r10, year, length, log votes,
rating, log budget, and the 16 of ``title_neighbors`` when the dataset has them) with NaN where
missing (gradient boosting splits on missing natively; logistic regression gets the training mean plus a 0/1 "missing" column), and the MPAA rating
(a native categorical for boosting, one-hot for the regression). The MovieLens raters set
(an id set, 9% present) has no fixed-width form these models take, so they go without it.
sklearn is a benchmark dependency only (the ``realdata`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pyarrow.parquet as pq

from benchmarks.movies.dataset import GENRES

TABULAR = [
    "r1",
    "r2",
    "r3",
    "r4",
    "r5",
    "r6",
    "r7",
    "r8",
    "r9",
    "r10",
    "year",
    "length",
    "log_votes",
    "rating",
    "log_budget",
]
LOGISTIC_C = (0.01, 0.1, 1.0)


def split_arrays(
    data: Path, split: str, mpaa_levels: List[str] | None = None
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[str]]:
    """``(title (N, 384), tabular [+ title_neighbors] + MPAA code (N, 16 or 32), genres (N, 7),
    MPAA levels)`` of a split; the MPAA code is the index in ``mpaa_levels`` (fitted on train),
    NaN when missing or unseen. ``title_neighbors`` is taken when the split has it."""
    table = pq.read_table(data / split / "part-00000.parquet")
    title = np.stack(table.column("title").to_numpy(zero_copy_only=False)).astype(np.float32)
    tabular = np.stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in TABULAR], axis=1)
    if "title_neighbors" in table.column_names:  # 16 more columns, never missing
        tabular = np.column_stack(
            [tabular, np.stack(table.column("title_neighbors").to_numpy(zero_copy_only=False)).astype(np.float64)]
        )
    mpaa = table.column("mpaa").to_pylist()
    levels = mpaa_levels if mpaa_levels is not None else sorted({m for m in mpaa if m is not None})
    code = np.array([levels.index(m) if m in levels else np.nan for m in mpaa], dtype=np.float64)
    genres = np.stack(table.column("genres").to_numpy(zero_copy_only=False)).astype(np.int64)
    return title, np.column_stack([tabular, code]), genres, levels


def load_splits(data: Path) -> Dict[str, tuple]:
    train = split_arrays(data, "train")
    levels = train[3]
    return {"train": train, **{s: split_arrays(data, s, levels) for s in ("valid", "test")}}


def gbdt_probabilities(splits: Dict[str, tuple], seed: int) -> Dict[str, np.ndarray]:
    """One HistGradientBoostingClassifier per genre (early stopping on 10% of train, MPAA as a
    native categorical): ``{split: (N, 7) probabilities}`` for valid and test."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = {s: np.column_stack([splits[s][0], splits[s][1]]) for s in splits}
    categorical = np.zeros(x["train"].shape[1], dtype=bool)
    categorical[-1] = True  # the MPAA code
    out = {s: np.zeros((x[s].shape[0], len(GENRES))) for s in ("valid", "test")}
    for g in range(len(GENRES)):
        model = HistGradientBoostingClassifier(categorical_features=categorical, early_stopping=True, random_state=seed)
        model.fit(x["train"], splits["train"][2][:, g])
        for s in out:
            out[s][:, g] = model.predict_proba(x[s])[:, 1]
    return out


def _logistic_matrix(split: tuple, means: np.ndarray, levels: int) -> np.ndarray:
    title, tabular, _, _ = split
    numbers, code = tabular[:, :-1], tabular[:, -1]
    missing = np.isnan(numbers)
    filled = np.where(missing, means, numbers)
    onehot = np.zeros((code.size, levels + 1))
    onehot[np.arange(code.size), np.where(np.isnan(code), levels, np.nan_to_num(code)).astype(int)] = 1.0
    return np.column_stack([title, filled, missing.astype(float), onehot])


def logistic_probabilities(
    splits: Dict[str, tuple], seed: int, choose: Callable[[np.ndarray, np.ndarray], float]
) -> Dict[str, np.ndarray]:
    """Logistic regression per genre on standardized features; C per genre chosen on
    validation by ``choose(probs, target)`` (higher is better) among :data:`LOGISTIC_C`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    means = np.nanmean(splits["train"][1][:, :-1], axis=0)
    levels = len(splits["train"][3])
    scaler = StandardScaler().fit(_logistic_matrix(splits["train"], means, levels))
    x = {s: scaler.transform(_logistic_matrix(splits[s], means, levels)) for s in splits}
    out = {s: np.zeros((x[s].shape[0], len(GENRES))) for s in ("valid", "test")}
    for g in range(len(GENRES)):
        best = None
        for c in LOGISTIC_C:
            model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x["train"], splits["train"][2][:, g])
            valid = model.predict_proba(x["valid"])[:, 1]
            score = choose(valid, splits["valid"][2][:, g])
            if best is None or score > best[0]:
                best = (score, model, valid)
        out["valid"][:, g] = best[2]
        out["test"][:, g] = best[1].predict_proba(x["test"])[:, 1]
    return out
