"""How the floats of a ``dense`` or ``dense_sequence`` modality are scaled, one dimension at a time.

| encoding | what each dimension ``j`` becomes                                              |
|----------|--------------------------------------------------------------------------------|
| standard | ``(x_j - mean_j) / std_j``                                                     |
| log1p    | ``sign(x_j) log1p(|x_j|)``, then standardized: for minutes, counts, prices     |
| none     | the value as stored                                                            |
| auto     | chosen per dimension by ``deepsets fit`` (:func:`choose`):                     |
|          | 1. vectors that are already normalized embeddings, with an L2 norm within     |
|          |    ``1 ± 0.1`` for at least 99% of them, are left as they are (``none``);     |
|          | 2. else a non-negative dimension with a heavy right tail (skewness beyond 2) |
|          |    takes ``log1p``;                                                           |
|          | 3. else a dimension already centred with a unit-ish scale (``|mean| <= 0.1``, |
|          |    ``0.5 <= std <= 2``) is left as it is (``none``);                          |
|          | 4. else ``standard``.                                                         |

Fitting is one streaming pass over the values (:class:`VectorMoments`: per-dimension running
mean, second and third central moments, mean and variance on the log1p scale, minimum and the
share of unit-norm vectors, merged batch by batch). What it keeps is plain numbers in the spec
(``Fitted.encodings``, ``mean``, ``std``, one entry per dimension), and :func:`apply` maps a flat
values buffer with whole-array numpy operations. A spec fitted before these encodings existed
has none of them and reads its vectors raw (``none``).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import polars as pl

from deepsets.features.arrow_lists import is_list_type, split_list
from deepsets.features.numeric_encodings import prefers_log1p, symlog

ENCODINGS = ("auto", "standard", "log1p", "none")
UNIT_NORM_TOLERANCE = 0.1
"""A vector counts as unit-norm when its L2 norm is within ``1 ± UNIT_NORM_TOLERANCE``."""
UNIT_NORM_SHARE = 0.99
"""``auto`` leaves a modality as it is when at least this share of its vectors is unit-norm."""
CENTRED_MEAN = 0.1
UNIT_SCALE = (0.5, 2.0)
"""``auto`` leaves a dimension with ``|mean| <= CENTRED_MEAN`` and a std within ``UNIT_SCALE``."""
MIN_STD = 1e-30
"""A dimension whose std is at most this counts as constant (std 1): dividing float32 values by
less could give infinities."""
BATCH_VALUES = 1 << 20
"""About how many floats one fitting batch holds."""


class VectorMoments:
    """Per-dimension running moments of ``(V, dim)`` vectors, merged batch by batch (Chan et al.).

    Only what ``encoding`` needs is gathered: mean and variance always; the log1p-scale mean
    and variance for ``log1p``; for ``auto`` also the third moment, the log1p-scale moments of
    the dimensions with no negative value so far (the only ones ``auto`` may log) and the
    share of unit-norm vectors.

    Attributes:
        count: vectors seen.
        mean, m2, m3: (dim,) mean and sums of squared / cubed deviations of the raw values.
        log_mean, log_m2: (dim,) mean and sum of squared deviations of ``sign(x) log1p(|x|)``.
        minimum: (dim,) smallest value.
        unit_norm: vectors whose L2 norm is within ``1 ± UNIT_NORM_TOLERANCE``.
    """

    def __init__(self, dim: int, encoding: str = "auto") -> None:
        self.dim, self.encoding = dim, encoding
        self.count = 0
        self.unit_norm = 0
        self.mean, self.m2, self.m3 = np.zeros(dim), np.zeros(dim), np.zeros(dim)
        self.log_mean, self.log_m2 = np.zeros(dim), np.zeros(dim)
        self.minimum = np.full(dim, np.inf)

    def add(self, x: np.ndarray) -> None:
        """Merge a batch of vectors.

        Args:
            x: (V, dim) finite values.
        """
        n_b = x.shape[0]
        if n_b == 0:
            return
        x = x.astype(np.float64, copy=False)
        n_a, n = self.count, self.count + n_b
        self.minimum = np.minimum(self.minimum, x.min(axis=0))
        mean_b = x.mean(axis=0)  # (dim,)
        dev = x - mean_b  # (V, dim)
        sq = dev * dev  # (V, dim)
        m2_b = sq.sum(axis=0)  # (dim,)
        delta = mean_b - self.mean  # (dim,)
        if self.encoding == "auto":
            tail = self.minimum >= 0  # (dim,) dimensions auto may still log
            m3_b = (sq[:, tail] * dev[:, tail]).sum(axis=0)
            d, m2_a = delta[tail], self.m2[tail]
            self.m3[tail] += m3_b + d**3 * n_a * n_b * (n_a - n_b) / n**2 + 3 * d * (n_a * m2_b[tail] - n_b * m2_a) / n
            norms = np.sqrt(np.einsum("ij,ij->i", x, x))  # (V,)
            self.unit_norm += int((np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE).sum())
        else:
            tail = np.full(self.dim, self.encoding == "log1p")
        if tail.any():
            logged = symlog(x[:, tail])  # (V, T)
            log_mean_b = logged.mean(axis=0)  # (T,)
            log_m2_b = ((logged - log_mean_b) ** 2).sum(axis=0)  # (T,)
            log_delta = log_mean_b - self.log_mean[tail]
            self.log_m2[tail] += log_m2_b + log_delta**2 * n_a * n_b / n
            self.log_mean[tail] += log_delta * n_b / n
        self.m2 = self.m2 + m2_b + delta**2 * n_a * n_b / n
        self.mean = self.mean + delta * n_b / n
        self.count = n

    def std(self) -> np.ndarray:
        """(dim,) population standard deviation (0 before any vector)."""
        return np.sqrt(self.m2 / self.count) if self.count else np.zeros(self.dim)

    def log_std(self) -> np.ndarray:
        """(dim,) population standard deviation on the log1p scale (where gathered)."""
        return np.sqrt(self.log_m2 / self.count) if self.count else np.zeros(self.dim)

    def skew(self) -> np.ndarray:
        """(dim,) population skewness (0 for a constant dimension; gathered for ``auto``, and
        there only for dimensions without negative values)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.sqrt(self.count) * self.m3 / self.m2**1.5
        return np.where(self.m2 > 0, out, 0.0)

    def unit_norm_share(self) -> float:
        return self.unit_norm / self.count if self.count else 0.0


def values_view(column: str, dtype: pl.DataType, sequence: bool, dim: int) -> pl.Expr:
    """What fitting reads of a file's float column: ``list<f64>`` of each row's floats
    (``dense``, and ``dense_sequence`` with ``dim = 1`` whether stored as scalars or as 1-d
    vectors, so files may differ), else ``list<list<f64>>`` of each row's vectors.

    Args:
        dtype: the column's polars type in this file.
        sequence: the column is a ``dense_sequence``.
    """
    col = pl.col(column)
    if sequence and dim > 1:
        return col.cast(pl.List(pl.List(pl.Float64))).alias(column)
    if sequence and isinstance(getattr(dtype, "inner", None), (pl.List, pl.Array)):  # 1-d vectors
        return col.cast(pl.List(pl.List(pl.Float64))).list.eval(pl.element().explode()).alias(column)
    return col.cast(pl.List(pl.Float64)).alias(column)  # also a column of nulls only


class RowCounts:
    """Rows, present rows (not null, not empty) and a histogram of row lengths, gathered in
    the same pass as :class:`VectorMoments`."""

    def __init__(self) -> None:
        self.rows = 0
        self.present_rows = 0
        self.lengths: Dict[int, int] = {}  # elements per present row -> rows

    def add(self, valid: np.ndarray, lengths: np.ndarray) -> None:
        """Args:
        valid: (B,) bool, the row is not null.
        lengths: (B,) elements per row (0 for null rows).
        """
        present = valid & (lengths > 0)  # (B,)
        self.rows += int(valid.size)
        self.present_rows += int(present.sum())
        values, counts = np.unique(lengths[present], return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist()):
            self.lengths[v] = self.lengths.get(v, 0) + c

    def stats(self, with_lengths: bool, max_len: Optional[int]) -> Dict[str, object]:
        """What ``base.collect_stats(presence_stats(...))`` gives: rows, present rows, presence
        rate and, ``with_lengths``, the p50/p90/p99 length (polars' ``nearest`` quantiles, the
        ``floor((n - 1) q + 0.5)``-th smallest), the longest row and the rows over ``max_len``."""
        out: Dict[str, object] = {
            "rows": self.rows,
            "present_rows": self.present_rows,
            "presence_rate": self.present_rows / self.rows if self.rows else 0.0,
        }
        if not with_lengths:
            return out
        values = np.array(sorted(self.lengths), dtype=np.int64)  # (L,)
        cumulative = np.cumsum([self.lengths[v] for v in values.tolist()])  # (L,)
        for q in (0.5, 0.9, 0.99):
            rank = int(np.floor((self.present_rows - 1) * q + 0.5))
            out[f"length_p{int(q * 100)}"] = (
                int(values[np.searchsorted(cumulative, rank, side="right")]) if values.size else 0
            )
        out["length_max"] = int(values[-1]) if values.size else 0
        if max_len is not None:
            out["truncated_rows"] = sum(c for v, c in self.lengths.items() if v > max_len)
        return out


def accumulate(lf: pl.LazyFrame, column: str, dim: int, encoding: str, rows_per_batch: int):
    """Stream the :func:`values_view` column ``column`` once: the row counts and the moments
    ``encoding`` needs.

    Rows whose float count is not a whole number of vectors, and vectors of the wrong length
    or holding a null, NaN or infinite value, are left out of the moments: reading the data
    through the spec (``deepsets fit`` validates) reports them with their file and rows.

    Returns:
        ``(RowCounts, VectorMoments)``.
    """
    rows, moments = RowCounts(), VectorMoments(dim, encoding)
    for frame in lf.select(pl.col(column)).collect_batches(chunk_size=rows_per_batch, engine="streaming"):
        parts = split_list(frame.get_column(column).to_arrow())
        rows.add(parts.valid, parts.lengths)
        if is_list_type(parts.flat.type):  # list<list<f64>>: the vectors of each row
            parts = split_list(parts.flat)
            whole = parts.valid & (parts.lengths == dim)  # (V,)
        else:  # list<f64>: a row's floats, a whole number of vectors
            whole = parts.lengths % dim == 0  # (B,)
        flat = parts.flat.to_numpy(zero_copy_only=False)  # (N,) float64, null -> NaN
        vectors = flat[np.repeat(whole, parts.lengths)].reshape(-1, dim)  # (V, dim)
        moments.add(vectors[np.isfinite(vectors).all(axis=1)])
    return rows, moments


def choose(encoding: str, moments: VectorMoments) -> List[str]:
    """Each dimension's encoding: ``encoding`` itself, or for ``auto`` the rule of the module
    docstring (unit-norm vectors, then log1p for heavy right tails, then already centred and
    unit-scaled, then standard)."""
    if encoding != "auto":
        return [encoding] * moments.dim
    if not moments.count or moments.unit_norm_share() >= UNIT_NORM_SHARE:  # nothing to scale by, or unit-norm
        return ["none"] * moments.dim
    std, skew = moments.std(), moments.skew()
    chosen = []
    for j in range(moments.dim):
        if prefers_log1p(skew[j], moments.minimum[j]):
            chosen.append("log1p")
        elif abs(moments.mean[j]) <= CENTRED_MEAN and UNIT_SCALE[0] <= std[j] <= UNIT_SCALE[1]:
            chosen.append("none")
        else:
            chosen.append("standard")
    return chosen


def fit(
    lf: pl.LazyFrame, column: str, dim: int, encoding: str, *, sequence: bool, max_len: Optional[int] = None
) -> Dict[str, object]:
    """One streaming pass: the row statistics and each dimension's encoding (``auto``
    resolved), mean and std.

    Args:
        lf: frames holding the :func:`values_view` column ``column``.
        sequence: a ``dense_sequence`` (row lengths are reported, cut at ``max_len``).

    Returns:
        ``{"stats": {...}, "encodings": [...], "mean": [...], "std": [...],
        "unit_norm_share": float, "unit_norm": bool (the unit-norm rule chose)}``, one list
        entry per dimension; ``mean``/``std`` on the encoded scale (after log1p), 0 and 1 for
        ``none`` dimensions, std 1 for constant ones (std at most :data:`MIN_STD`).
    """
    per_row = 16 if sequence else 1  # vectors in a row, to size the batches
    counts, moments = accumulate(lf, column, dim, encoding, max(64, BATCH_VALUES // (dim * per_row)))
    chosen = choose(encoding, moments)
    logged = np.array([e == "log1p" for e in chosen])  # (dim,)
    mean = np.where(logged, moments.log_mean, moments.mean)
    std = np.where(logged, moments.log_std(), moments.std())
    std = np.where(np.isfinite(std) & (std > MIN_STD), std, 1.0)  # constant: centred only
    raw = np.array([e == "none" for e in chosen])
    mean, std = np.where(raw, 0.0, mean), np.where(raw, 1.0, std)
    unit_norm = encoding == "auto" and bool(moments.count) and moments.unit_norm_share() >= UNIT_NORM_SHARE
    return {
        "stats": counts.stats(sequence, max_len),
        "encodings": chosen,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "unit_norm_share": moments.unit_norm_share(),
        "unit_norm": unit_norm,
    }


def apply(
    vectors: np.ndarray,
    encodings: Optional[Sequence[str]],
    mean: Optional[Sequence[float]],
    std: Optional[Sequence[float]],
) -> np.ndarray:
    """The model's values of ``(V, dim)`` vectors under the fitted per-dimension encodings.

    Args:
        vectors: (V, dim) float32, present vectors only (missing rows never reach here).
        encodings, mean, std: as fitted; ``None`` (a spec fitted before encodings) keeps the
            values raw.

    Returns:
        (V, dim) float32, a new array unless every dimension is ``none``.
    """
    if not encodings or all(e == "none" for e in encodings):
        return vectors
    logged = np.array([e == "log1p" for e in encodings])  # (dim,)
    out = vectors.astype(np.float32, copy=True)  # (V, dim)
    if logged.any():
        out[:, logged] = symlog(out[:, logged])
    return (out - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)  # (V, dim)


def describe(encodings: Sequence[str], unit_norm: bool) -> Dict[str, str]:
    """``{"standard": "dims 0-2, 5", "log1p": "dims 3-4"}``: which dimensions took which
    encoding, for ``deepsets fit``'s report (``(unit-norm vectors)`` when that rule chose)."""
    out: Dict[str, str] = {}
    for encoding in dict.fromkeys(encodings):
        dims = [j for j, e in enumerate(encodings) if e == encoding]
        spans = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in _runs(dims))
        out[encoding] = f"{'dims' if len(dims) > 1 else 'dim'} {spans}" + (" (unit-norm vectors)" if unit_norm else "")
    return out


def _runs(sorted_ints: Iterable[int]) -> List[tuple]:
    runs: List[list] = []
    for j in sorted_ints:
        if runs and j == runs[-1][1] + 1:
            runs[-1][1] = j
        else:
            runs.append([j, j])
    return [tuple(r) for r in runs]
