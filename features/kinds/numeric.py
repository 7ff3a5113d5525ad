"""``numeric``: a group of scalar numeric columns forming one modality, standardized."""

from __future__ import annotations

from typing import List, Literal, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from pydantic import Field, field_validator

from deepsets.batch import ModalityTensors
from features.errors import DataError
from features.kinds.base import BaseFeature, Fitted, ModalityCounts


class NumericFeature(BaseFeature):
    """Scalar columns standardized with fitted mean/std.

    A null or NaN value is a missing value (``observed = False``, value 0 after
    standardization, counted); the modality is missing for a row when every value is missing.
    Infinite values are errors.
    """

    kind: Literal["numeric"]
    columns: List[str] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: List[str]) -> List[str]:
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise ValueError(f"columns listed twice: {dupes}")
        return columns

    def source_columns(self) -> List[str]:
        return list(self.columns)

    def expected_type(self) -> str:
        return "a numeric scalar (int or float)"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type)

    def fit_dtype(self, id_type: Optional[str]) -> pl.DataType:
        return pl.Float64

    def null_type(self, id_type: Optional[str]) -> pa.DataType:
        return pa.float64()

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        exprs: list[pl.Expr] = [pl.len().alias("rows")]
        for i, c in enumerate(self.columns):
            x = pl.col(c).cast(pl.Float64).fill_nan(None)
            exprs += [x.mean().alias(f"mean{i}"), x.std(ddof=0).alias(f"std{i}"), x.null_count().alias(f"missing{i}")]
        xs = [pl.col(c).cast(pl.Float64).fill_nan(None).is_not_null() for c in self.columns]
        exprs.append(pl.any_horizontal(xs).sum().alias("present_rows"))
        row = lf.select(exprs).collect(engine="streaming").row(0, named=True)
        rows = int(row["rows"])
        means = [float(row[f"mean{i}"]) if row[f"mean{i}"] is not None else 0.0 for i in range(len(self.columns))]
        stds = [float(row[f"std{i}"] or 0.0) for i in range(len(self.columns))]
        stds = [s if np.isfinite(s) and s > 0 else 1.0 for s in stds]
        missing = {c: int(row[f"missing{i}"]) for i, c in enumerate(self.columns)}
        stats = {
            "rows": rows,
            "present_rows": int(row["present_rows"]),
            "presence_rate": int(row["present_rows"]) / rows if rows else 0.0,
            "missing_values": sum(missing.values()),
            "missing_value_rate": {c: (m / rows if rows else 0.0) for c, m in missing.items()},
        }
        return Fitted(mean=means, std=stds, stats=stats)

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        b = table.num_rows
        raw = np.empty((b, len(self.columns)), dtype=np.float64)  # (B, K)
        for k, c in enumerate(self.columns):
            arr = table.column(c)
            raw[:, k] = arr.cast(pa.float64()).to_numpy(zero_copy_only=False) if b else raw[:, k]
            inf = np.isinf(raw[:, k])
            if inf.any():
                raise DataError("infinite value (expected a finite number, or null/NaN for missing)", column=c, rows=np.nonzero(inf)[0])
        observed = ~np.isnan(raw)  # (B, K) null became NaN in to_numpy
        mean = np.asarray(fitted.mean, dtype=np.float64)
        std = np.asarray(fitted.std, dtype=np.float64)
        values = np.where(observed, (raw - mean) / std, 0.0).astype(np.float32)  # (B, K)
        present = observed.any(axis=1)  # (B,)
        counts.rows += b
        counts.present_rows += int(present.sum())
        counts.missing_values += int((~observed[present]).sum())
        return ModalityTensors.fixed(torch.from_numpy(values), torch.from_numpy(present), torch.from_numpy(observed))
