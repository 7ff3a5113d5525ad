"""How one numeric column becomes what the model sees (Gorishniy et al., "On Embeddings for
Numerical Features in Tabular Deep Learning", 2022).

| encoding   | values | what                                                                         |
|------------|--------|------------------------------------------------------------------------------|
| standard   | 1      | ``(x - mean) / std``                                                         |
| log1p      | 1      | ``sign(x) log1p(|x|)``, then standardized: for heavy-tailed counts and sums  |
| quantile   | 1      | the empirical CDF at ``x`` (fitted quantiles), mapped to a standard normal  |
| ple        | bins   | piecewise-linear encoding over quantile bins: 1 below ``x``'s bin, the      |
|            |        | fraction of its bin, 0 above                                                 |
| periodic   | 1      | standardized, then a learned periodic embedding in the model                 |
|            |        | (``sin``/``cos`` of learned frequencies, linear, ReLU: "PLR")                |
| auto       |        | ``log1p`` for a non-negative column with a heavy right tail (skewness beyond |
|            |        | 2, say counts reaching 2,000 with a median of 50), else ``standard``; a      |
|            |        | left-skewed column (most values at the top of its range) stays ``standard`` |
|            |        | (:func:`prefers_log1p`); decided by ``deepsets fit``                         |

Missing values (null or NaN) stay missing: every value of the column is marked unobserved.
Everything fitted is plain numbers in the spec (``Fitted.encodings``, ``mean``, ``std``,
``edges``), so a saved spec applies the same transform anywhere.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import polars as pl
import torch

ENCODINGS = ("auto", "standard", "log1p", "quantile", "ple", "periodic")
SKEWED = 2.0
"""``auto`` takes log1p beyond this skewness (a normal column has 0, an exponential 2)."""


def prefers_log1p(skew: Optional[float], minimum: Optional[float]) -> bool:
    """``auto``'s choice of log1p: a right-skewed (heavy right tail, skewness beyond
    :data:`SKEWED`), non-negative column (minutes, counts, prices). A left-skewed column has
    its long tail towards zero, where log1p would stretch it further, and a column with
    negative values is no count."""
    ok = skew is not None and minimum is not None and np.isfinite(skew) and np.isfinite(minimum)
    return bool(ok and skew > SKEWED and minimum >= 0)


def symlog(x):
    """``sign(x) * log1p(|x|)``: log1p for non-negative values, mirrored below zero."""
    return np.sign(x) * np.log1p(np.abs(x))


def _symlog_expr(c: str) -> pl.Expr:
    x = pl.col(c).cast(pl.Float64).fill_nan(None)
    return x.sign() * x.abs().log1p()


def fit_columns(lf: pl.LazyFrame, columns: Sequence[str], encodings: Sequence[str], bins: int) -> Dict[str, list]:
    """Fit every column's encoding in one streaming pass (two when quantiles are needed).

    Returns:
        ``{"encodings": [...], "mean": [...], "std": [...], "edges": [[...] or [] per column],
        "missing": [...], "rows": n, "present_rows": n}``: ``auto`` resolved, mean/std on the
        encoded scale (after log1p), quantile edges for ``quantile`` / ``ple`` columns.
    """
    exprs: List[pl.Expr] = [pl.len().alias("rows")]
    for i, c in enumerate(columns):
        x = pl.col(c).cast(pl.Float64).fill_nan(None)
        exprs += [
            x.mean().alias(f"mean{i}"),
            x.std(ddof=0).alias(f"std{i}"),
            x.null_count().alias(f"missing{i}"),
            x.skew().alias(f"skew{i}"),
            x.min().alias(f"min{i}"),
            _symlog_expr(c).mean().alias(f"lmean{i}"),
            _symlog_expr(c).std(ddof=0).alias(f"lstd{i}"),
        ]
    exprs.append(
        pl.any_horizontal([pl.col(c).cast(pl.Float64).fill_nan(None).is_not_null() for c in columns])
        .sum()
        .alias("present_rows")
    )
    row = lf.select(exprs).collect(engine="streaming").row(0, named=True)
    chosen, means, stds = [], [], []
    for i, encoding in enumerate(encodings):
        if encoding == "auto":
            encoding = "log1p" if prefers_log1p(row[f"skew{i}"], row[f"min{i}"]) else "standard"
        logged = encoding == "log1p"
        mean, std = row[f"lmean{i}" if logged else f"mean{i}"], row[f"lstd{i}" if logged else f"std{i}"]
        chosen.append(encoding)
        means.append(float(mean) if mean is not None else 0.0)
        stds.append(float(std) if std is not None and np.isfinite(std) and std > 0 else 1.0)
    edges = _quantile_edges(lf, columns, chosen, bins)
    return {
        "encodings": chosen,
        "mean": means,
        "std": stds,
        "edges": edges,
        "rows": int(row["rows"]),
        "present_rows": int(row["present_rows"]),
        "missing": [int(row[f"missing{i}"]) for i in range(len(columns))],
    }


def _quantile_edges(lf: pl.LazyFrame, columns: Sequence[str], encodings: Sequence[str], bins: int) -> List[List[float]]:
    """Distinct quantile edges (``bins + 1`` quantiles at most) of the columns that need them."""
    wanted = [i for i, e in enumerate(encodings) if e in ("quantile", "ple")]
    edges: List[List[float]] = [[] for _ in columns]
    if not wanted:
        return edges
    qs = np.linspace(0.0, 1.0, bins + 1)
    exprs = [
        pl.col(columns[i]).cast(pl.Float64).fill_nan(None).quantile(float(q), interpolation="linear").alias(f"q{i}_{j}")
        for i in wanted
        for j, q in enumerate(qs)
    ]
    row = lf.select(exprs).collect(engine="streaming").row(0, named=True)
    for i in wanted:
        values = [row[f"q{i}_{j}"] for j in range(len(qs))]
        edges[i] = sorted({float(v) for v in values if v is not None})
    return edges


def width(encoding: str, edges: Sequence[float]) -> int:
    """How many values a column of this encoding gives the model."""
    return max(1, len(edges) - 1) if encoding == "ple" else 1


def encode(
    raw: np.ndarray, observed: np.ndarray, encoding: str, mean: float, std: float, edges: Sequence[float]
) -> np.ndarray:
    """One column's model values: ``(B, width)`` float64, 0 where ``observed`` is False.

    Args:
        raw: (B,) float64 values (NaN where missing).
        observed: (B,) bool.
    """
    x = np.where(observed, raw, 0.0)  # (B,)
    if encoding in ("standard", "periodic"):
        out = ((x - mean) / std)[:, None]
    elif encoding == "log1p":
        out = ((symlog(x) - mean) / std)[:, None]
    elif encoding == "quantile":
        out = _normal_scores(x, np.asarray(edges))[:, None]
    elif encoding == "ple":
        out = piecewise_linear(x, np.asarray(edges))
    else:
        raise ValueError(f"unknown numeric encoding {encoding!r} (expected one of {', '.join(ENCODINGS[1:])})")
    return np.where(observed[:, None], out, 0.0)


def piecewise_linear(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``(B, T)`` for ``T = len(edges) - 1`` bins: ``clip((x - e_t) / (e_{t+1} - e_t), 0, 1)``
    (1 for bins below ``x``, its fraction inside its own bin, 0 above). A column with a single
    distinct value has one constant bin."""
    if edges.size < 2:
        return np.zeros((x.size, 1))
    lo, hi = edges[:-1], edges[1:]  # (T,), (T,)
    return np.clip((x[:, None] - lo) / (hi - lo), 0.0, 1.0)  # (B, T)


def _normal_scores(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The fitted CDF at ``x`` (linear between quantile edges), as a standard normal score."""
    if edges.size < 2:
        return np.zeros(x.size)
    cdf = np.interp(x, edges, np.linspace(0.0, 1.0, edges.size))  # (B,) in [0, 1]
    eps = 1e-3
    return torch.special.ndtri(torch.from_numpy(np.clip(cdf, eps, 1 - eps))).numpy()


def check_encodings(columns: Sequence[str], encoding: str, overrides: Optional[Dict[str, str]]) -> List[str]:
    """Each column's encoding (the group's, unless overridden by name).

    Raises:
        ValueError: for an override of a column not in the group, or an unknown encoding.
    """
    overrides = overrides or {}
    stray = sorted(set(overrides) - set(columns))
    if stray:
        raise ValueError(f"encodings name columns not in this group: {stray} (columns: {list(columns)})")
    bad = sorted({e for e in [encoding, *overrides.values()] if e not in ENCODINGS})
    if bad:
        raise ValueError(f"unknown encoding {bad} (expected one of {', '.join(ENCODINGS)})")
    return [overrides.get(c, encoding) for c in columns]
