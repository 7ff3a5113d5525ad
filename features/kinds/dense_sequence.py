"""``dense_sequence``: a variable-length list of fixed-size float vectors (per-frame features)."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from pydantic import PositiveInt

from deepsets.batch import ModalityTensors
from deepsets.features.arrow_lists import ListParts, float_values, is_list_type, split_list, truncate
from deepsets.features.errors import DataError
from deepsets.features.kinds.base import BaseFeature, Fitted, ModalityCounts, collect_stats, length_view, presence_stats
from deepsets.features.kinds.dense import is_float_list


class DenseSequenceFeature(BaseFeature):
    """Up to ``max_len`` vectors of ``dim`` floats per row (first ones kept by default)."""

    kind: Literal["dense_sequence"]
    dim: PositiveInt
    max_len: Optional[PositiveInt] = None
    truncate: Literal["keep_first", "keep_last"] = "keep_first"

    def expected_type(self) -> str:
        return f"list<list<float>> or list<fixed_size_list<float, {self.dim}>>"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        if not is_list_type(arrow_type) or not is_float_list(arrow_type.value_type):
            return False
        inner = arrow_type.value_type
        return not (pa.types.is_fixed_size_list(inner) and inner.list_size != self.dim)

    def null_type(self, id_type: Optional[str]) -> pa.DataType:
        return pa.list_(pa.list_(pa.float32()))

    def fit_view(self, column: str, dtype: pl.DataType, id_type: Optional[str]) -> pl.Expr:
        return length_view(column, dtype)

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        lengths = pl.col(self.source_column)  # fit_view: lengths only
        present = lengths.is_not_null() & (lengths > 0)
        return Fitted(stats=collect_stats(lf, presence_stats(present, lengths, self.max_len)))

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        column = self.source_column
        outer = split_list(table.column(column))
        inner = split_list(outer.flat)
        bad = ~inner.valid | (inner.lengths != self.dim)
        if bad.any():
            found = "null" if not inner.valid[bad][0] else f"{int(inner.lengths[bad][0])} floats"
            raise DataError(
                f"expected every vector to hold {self.dim} floats, found {found}", column=column, rows=np.unique(outer.row_of_element()[bad])
            )
        flat = float_values(inner.flat, _RowsOf(outer, inner.lengths), column, "vector of a sequence")
        vectors = flat.reshape(-1, self.dim)  # (V, dim)
        present = outer.valid & (outer.lengths > 0)  # (B,)
        cut = truncate(outer.lengths, self.max_len, keep_last=self.truncate == "keep_last")
        counts.rows += present.size
        counts.present_rows += int(present.sum())
        counts.truncated_rows += cut.truncated_rows
        counts.dropped_elements += cut.dropped_elements
        values = torch.from_numpy(np.ascontiguousarray(vectors[cut.keep]))  # (V', dim)
        return ModalityTensors.from_lengths(values, torch.from_numpy(cut.lengths), torch.from_numpy(present))


class _RowsOf:
    """Element -> outer row mapping for floats nested two levels deep (for error messages)."""

    def __init__(self, outer: ListParts, vector_lengths: np.ndarray) -> None:
        self._outer, self._vector_lengths = outer, vector_lengths

    def row_of_element(self) -> np.ndarray:
        return np.repeat(self._outer.row_of_element(), self._vector_lengths)
