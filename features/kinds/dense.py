"""``dense``: one fixed-size float vector per row (``list<float>`` or ``fixed_size_list<float>``)."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from pydantic import PositiveInt

from deepsets.batch import ModalityTensors
from deepsets.features.arrow_lists import float_values, is_list_type, split_list
from deepsets.features.errors import DataError
from deepsets.features.kinds.base import BaseFeature, Fitted, ModalityCounts, collect_stats, length_view, presence_stats


def is_float_list(t: pa.DataType) -> bool:
    return is_list_type(t) and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type))


class DenseFeature(BaseFeature):
    """A fixed-size vector of ``dim`` floats; null or empty = missing."""

    kind: Literal["dense"]
    dim: PositiveInt

    def expected_type(self) -> str:
        return f"list<float> or fixed_size_list<float, {self.dim}>"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        if pa.types.is_fixed_size_list(arrow_type) and arrow_type.list_size != self.dim:
            return False
        return is_float_list(arrow_type)

    def null_type(self, id_type: Optional[str]) -> pa.DataType:
        return pa.list_(pa.float32())

    def fit_view(self, column: str, dtype: pl.DataType, id_type: Optional[str]) -> pl.Expr:
        return length_view(column, dtype)

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        length = pl.col(self.source_column)  # fit_view: lengths only
        present = length.is_not_null() & (length > 0)
        return Fitted(stats=collect_stats(lf, presence_stats(present, None, None)))

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        column = self.source_column
        parts = split_list(table.column(column))
        present = parts.valid & (parts.lengths > 0)  # (B,)
        wrong = present & (parts.lengths != self.dim)
        if wrong.any():
            rows = np.nonzero(wrong)[0]
            raise DataError(
                f"expected {self.dim} floats per vector, found {int(parts.lengths[rows[0]])}", column=column, rows=rows
            )
        flat = float_values(parts.flat, parts, column, "dense vector")  # (P*dim,)
        b = present.size
        if present.all():
            values = torch.from_numpy(flat.reshape(b, self.dim).copy())  # (B, dim)
        else:
            dense = np.zeros((b, self.dim), dtype=np.float32)  # (B, dim), zeros where missing
            dense[present] = flat.reshape(-1, self.dim)
            values = torch.from_numpy(dense)
        counts.rows += b
        counts.present_rows += int(present.sum())
        return ModalityTensors.fixed(values, torch.from_numpy(present))

