"""The gradient-boosting peers a user would pick for these tables, on the same splits: LightGBM,
CatBoost and scikit-learn's HistGradientBoosting, each over a small grid, early-stopped and
chosen on validation.

Their input is what a user writes in ten lines: the flat columns (numbers as they are, strings
as category codes) plus :func:`list_aggregates` of every list column (count, mean, last, max).
Category codes are fitted on train: the 254 most frequent values, everything else one "other"
code, null stays missing (HistGradientBoosting takes at most 255 categories).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.tables.common import ID_COLUMN, SPLITS

TOP_CATEGORIES = 254
ROUNDS = 2000
"""Most boosting rounds (``--quick``: 300); early stopping on validation ends them sooner."""
PATIENCE = 50
THREADS = 1
"""Threads per peer. Two OpenMP threads on this shared 2-core machine spun for minutes on a
3,000-row table (LightGBM 227 s for its grid); one thread does not spin."""
GRIDS = {
    "LightGBM": [{"learning_rate": lr, "num_leaves": leaves} for lr in (0.05, 0.1) for leaves in (15, 63)],
    "CatBoost": [{"learning_rate": lr, "depth": depth} for lr in (0.05, 0.1) for depth in (4, 6)],
    "HistGradientBoosting": [
        {"learning_rate": lr, "max_leaf_nodes": leaves} for lr in (0.05, 0.1) for leaves in (15, 63)
    ],
}


def list_aggregates(column: pa.ChunkedArray | pa.Array, name: str) -> dict[str, np.ndarray]:
    """Per-row aggregates of a list column, the features a user derives by hand.

    Every list gets ``<name>_count`` (its length; NaN for a null list). A list of numbers, or of
    number vectors, gets the ``mean``, ``last`` and ``max`` of each component
    (``<name>_<k>_mean`` ..., NaN for an empty list); a list of ids or strings gets the
    ``distinct`` count and the ``last`` element (an object array, None when empty).

    Args:
        column: a list column (list or large_list of numbers, ids, strings or fixed-size vectors).
        name: the column's name, the prefix of every feature.

    Returns:
        ``{feature name: (N,) array}``.

    Raises:
        TypeError: naming the column when it is not a list column.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        raise TypeError(f"list_aggregates: column {name!r} is {array.type}, not a list column")
    rows = len(array)
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.float64)  # (N,), NaN where null
    out = {f"{name}_count": lengths}
    values = pc.list_flatten(array)
    parents = pc.list_parent_indices(array).to_numpy()  # (total,)
    element = array.type.value_type
    if pa.types.is_fixed_size_list(element) or pa.types.is_floating(element):  # numbers; integer elements are ids
        width = element.list_size if pa.types.is_fixed_size_list(element) else 1
        flat = (pc.list_flatten(values) if width > 1 or pa.types.is_fixed_size_list(element) else values).to_numpy(
            zero_copy_only=False
        )
        frame = pd.DataFrame(flat.astype(np.float64).reshape(-1, width)).assign(row=parents)
        grouped = frame.groupby("row")
        for how in ("mean", "last", "max"):
            table = getattr(grouped, how)().reindex(range(rows))  # (N, width), NaN for empty rows
            for k in range(width):
                label = f"{name}_{how}" if width == 1 else f"{name}_{k}_{how}"
                out[label] = table[k].to_numpy(np.float64)
        return out
    frame = pd.DataFrame({"value": values.to_numpy(zero_copy_only=False), "row": parents})
    grouped = frame.groupby("row")["value"]
    distinct = grouped.nunique().reindex(range(rows)).to_numpy(np.float64)
    out[f"{name}_distinct"] = np.where(lengths == 0, 0.0, distinct)  # NaN stays for a null list
    last = grouped.last().reindex(range(rows))
    out[f"{name}_last"] = np.array([None if pd.isna(v) else v for v in last], dtype=object)
    return out


def feature_frames(data: Path, label: str) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray], list[str]]:
    """The peers' input for each split under ``data``: flat columns plus list aggregates.

    Returns:
        ``(features, targets, categorical)``: per split a float DataFrame (category codes as
        floats, NaN where missing), per split the ``(N,)`` target, and the names of the
        category columns.
    """
    raw = {}
    for split in SPLITS:
        table = pq.read_table(data / split)
        columns: dict[str, np.ndarray] = {}
        for name in table.column_names:
            if name in (ID_COLUMN, label):
                continue
            column = table.column(name)
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                columns.update(list_aggregates(column, name))
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                columns[name] = np.array(column.to_pylist(), dtype=object)
            else:
                columns[name] = column.to_numpy(zero_copy_only=False).astype(np.float64)
        raw[split] = (columns, table.column(label).to_numpy().astype(np.float64))
    categorical = [n for n, v in raw["train"][0].items() if v.dtype == object]
    levels = {n: category_levels(raw["train"][0][n]) for n in categorical}
    features = {}
    for split, (columns, _) in raw.items():
        features[split] = pd.DataFrame(
            {n: category_codes(v, levels[n]) if n in levels else v for n, v in columns.items()}
        )
    return features, {s: raw[s][1] for s in SPLITS}, categorical


def category_levels(values: np.ndarray) -> dict[object, int]:
    """The :data:`TOP_CATEGORIES` most frequent non-null training values, most frequent first
    (ties by value), each with its code."""
    counts = pd.Series([v for v in values if v is not None]).astype(str).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
    return {value: code for code, (value, _) in enumerate(ranked)}


def category_codes(values: np.ndarray, levels: dict[object, int]) -> np.ndarray:
    """``(N,)`` float codes: a level's code, :data:`TOP_CATEGORIES` for any other value, NaN for null."""
    return np.array([np.nan if v is None else levels.get(str(v), TOP_CATEGORIES) for v in values], dtype=np.float64)


def score(task: str, target: np.ndarray, prediction: np.ndarray) -> float:
    """Test AUC for ``binary``, RMSE for ``regression``."""
    from sklearn.metrics import roc_auc_score

    if task == "binary":
        return float(roc_auc_score(target, prediction))
    return float(np.sqrt(np.mean((target - prediction) ** 2)))


def better(task: str, a: float, b: float) -> bool:
    """Whether score ``a`` beats ``b`` (AUC higher, RMSE lower)."""
    return a > b if task == "binary" else a < b


def _lightgbm(task: str, setting: dict, seed: int, x: dict, y: dict, categorical: list[str], rounds: int) -> Callable:
    import lightgbm

    kind = lightgbm.LGBMClassifier if task == "binary" else lightgbm.LGBMRegressor
    model = kind(n_estimators=rounds, random_state=seed, n_jobs=THREADS, verbose=-1, **setting)
    model.fit(
        x["train"],
        y["train"],
        eval_X=(x["valid"],),
        eval_y=(y["valid"],),
        categorical_feature=categorical,
        callbacks=[lightgbm.early_stopping(PATIENCE, verbose=False)],
    )
    return _predictor(task, model, x)


def _catboost(task: str, setting: dict, seed: int, x: dict, y: dict, categorical: list[str], rounds: int) -> Callable:
    import catboost

    def pool(split):  # CatBoost takes categories as integers, not NaN: -1 is "missing"
        frame = x[split].copy()
        frame[categorical] = frame[categorical].fillna(-1).astype(np.int64)
        return catboost.Pool(frame, y[split], cat_features=categorical)

    kind = catboost.CatBoostClassifier if task == "binary" else catboost.CatBoostRegressor
    model = kind(
        iterations=rounds,
        random_seed=seed,
        thread_count=THREADS,
        verbose=False,
        early_stopping_rounds=PATIENCE,
        allow_writing_files=False,
        **setting,
    )
    model.fit(pool("train"), eval_set=pool("valid"))
    return lambda split: model.predict_proba(pool(split))[:, 1] if task == "binary" else model.predict(pool(split))


def _histgradientboosting(
    task: str, setting: dict, seed: int, x: dict, y: dict, categorical: list[str], rounds: int
) -> Callable:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from threadpoolctl import threadpool_limits

    kind = HistGradientBoostingClassifier if task == "binary" else HistGradientBoostingRegressor
    mask = np.array([c in categorical for c in x["train"].columns])
    # early stopping on 10% of train (scikit-learn's own); the setting is chosen on validation
    model = kind(max_iter=rounds, early_stopping=True, categorical_features=mask, random_state=seed, **setting)
    with threadpool_limits(THREADS):
        model.fit(x["train"].to_numpy(), y["train"])
    return _predictor(task, model, x, numpy=True)


def _predictor(task: str, model, x: dict, numpy: bool = False) -> Callable:
    """``predict(split)``: the model's probabilities (binary) or values (regression) on a split."""

    def predict(split: str) -> np.ndarray:
        frame = x[split].to_numpy() if numpy else x[split]
        from threadpoolctl import threadpool_limits

        with threadpool_limits(THREADS):
            return model.predict_proba(frame)[:, 1] if task == "binary" else model.predict(frame)

    return predict


FITTERS = {"LightGBM": _lightgbm, "CatBoost": _catboost, "HistGradientBoosting": _histgradientboosting}


def run_peer(name: str, task: str, seed: int, x: dict, y: dict, categorical: list[str], rounds: int = ROUNDS) -> dict:
    """Fit every setting of the peer's grid (at most ``rounds`` boosting rounds each), keep the
    one best on validation.

    Returns:
        ``{"valid", "test", "setting", "seconds"}``: the kept setting's validation and test
        scores (AUC or RMSE) and the wall time of the whole grid, predictions included.
    """
    started = time.perf_counter()
    best = None
    for setting in GRIDS[name]:
        predict = FITTERS[name](task, setting, seed, x, y, categorical, rounds)  # predict(split)
        valid = score(task, y["valid"], predict("valid"))
        if best is None or better(task, valid, best[0]):
            best = (valid, predict, setting)
    return {
        "valid": best[0],
        "test": score(task, y["test"], best[1]("test")),
        "setting": best[2],
        "seconds": time.perf_counter() - started,
    }
