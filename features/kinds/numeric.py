"""``numeric``: a group of scalar numeric columns forming one modality, each column encoded
(standardized by default; ``deepsets.features.numeric_encodings`` lists the encodings)."""

from __future__ import annotations

from typing import Dict, List, Literal, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from pydantic import Field, PositiveInt, field_validator, model_validator

from deepsets.batch import ModalityTensors
from deepsets.features import numeric_encodings as enc
from deepsets.features.errors import DataError
from deepsets.features.kinds.base import BaseFeature, Fitted, ModalityCounts
from deepsets.modality import ModalityInfo

Encoding = Literal["auto", "standard", "log1p", "quantile", "ple", "periodic"]


class NumericFeature(BaseFeature):
    """Scalar columns, each encoded for the model as fitted.

    ``encoding`` applies to every column, ``encodings`` overrides it per column
    (``encodings = {visits = "ple"}``); ``bins`` is the number of quantile bins of ``quantile``
    and ``ple``. A null or NaN value is a missing value (``observed = False``, value 0 after
    encoding, counted); the modality is missing for a row when every value is missing.
    Infinite values are errors.
    """

    kind: Literal["numeric"]
    columns: List[str] = Field(min_length=1)  # the scalar columns of this modality
    encoding: Encoding = "auto"  # every column's encoding, fitted by deepsets fit
    encodings: Dict[str, Encoding] = Field(default_factory=dict)  # per column, overriding encoding
    bins: PositiveInt = Field(16, le=1024)  # quantile bins of the quantile and ple encodings

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: List[str]) -> List[str]:
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise ValueError(f"columns listed twice: {dupes}")
        return columns

    @model_validator(mode="after")
    def _overrides_name_columns(self) -> "NumericFeature":
        enc.check_encodings(self.columns, self.encoding, self.encodings)
        return self

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
        chosen = enc.check_encodings(self.columns, self.encoding, self.encodings)
        fitted = enc.fit_columns(lf, self.columns, chosen, self.bins)
        rows = fitted["rows"]
        stats = {
            "rows": rows,
            "present_rows": fitted["present_rows"],
            "presence_rate": fitted["present_rows"] / rows if rows else 0.0,
            "missing_values": sum(fitted["missing"]),
            "missing_value_rate": {c: (m / rows if rows else 0.0) for c, m in zip(self.columns, fitted["missing"])},
            "encodings": dict(zip(self.columns, fitted["encodings"])),
        }
        return Fitted(
            mean=fitted["mean"], std=fitted["std"], encodings=fitted["encodings"], edges=fitted["edges"], stats=stats
        )

    def _column_encodings(self, fitted: Fitted) -> List[str]:
        return (
            list(fitted.encodings) if fitted.encodings else ["standard"] * len(self.columns)
        )  # specs fitted before encodings

    def _column_edges(self, fitted: Fitted) -> List[List[float]]:
        return [list(e) for e in fitted.edges] if fitted.edges else [[] for _ in self.columns]

    def model_info(self, fitted: Fitted) -> ModalityInfo:
        widths, periodic = [], []
        for encoding, edges in zip(self._column_encodings(fitted), self._column_edges(fitted)):
            if encoding == "periodic":
                periodic.append(sum(widths))
            widths.append(enc.width(encoding, edges))
        return ModalityInfo(self.name, self.kind, num_columns=sum(widths), periodic_columns=tuple(periodic))

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        b = table.num_rows
        parts, observed_parts, observed_any = [], [], np.zeros(b, dtype=bool)
        missing = 0
        for k, (c, encoding, edges) in enumerate(
            zip(self.columns, self._column_encodings(fitted), self._column_edges(fitted))
        ):
            raw = (
                table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False) if b else np.zeros(0)
            )  # (B,) null -> NaN
            inf = np.isinf(raw)
            if inf.any():
                raise DataError(
                    "infinite value (expected a finite number, or null/NaN for missing)",
                    column=c,
                    rows=np.nonzero(inf)[0],
                )
            observed = ~np.isnan(raw)  # (B,)
            values = enc.encode(raw, observed, encoding, fitted.mean[k], fitted.std[k], edges)  # (B, w)
            parts.append(values)
            observed_parts.append(np.repeat(observed[:, None], values.shape[1], axis=1))  # (B, w)
            observed_any |= observed
            missing += int((~observed).sum())
        values = np.concatenate(parts, axis=1).astype(np.float32)  # (B, W)
        observed = np.concatenate(observed_parts, axis=1)  # (B, W)
        counts.rows += b
        counts.present_rows += int(observed_any.sum())
        counts.missing_values += missing - int((~observed_any).sum()) * len(
            self.columns
        )  # missing values of present rows
        return ModalityTensors.fixed(
            torch.from_numpy(values), torch.from_numpy(observed_any), torch.from_numpy(observed)
        )
