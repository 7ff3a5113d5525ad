"""``dense_sequence``: a variable-length list of fixed-size float vectors (per-frame features),
or with ``dim = 1`` a plain list of scalars (per-event durations); each dimension scaled as
fitted (``deepsets.features.vector_encodings``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from pydantic import PositiveInt

from deepsets.batch import ModalityTensors
from deepsets.features import vector_encodings
from deepsets.features.arrow_lists import ListParts, float_values, is_list_type, split_list, truncate
from deepsets.features.errors import DataError
from deepsets.features.kinds.base import BaseFeature, Fitted, ModalityCounts, length_view
from deepsets.features.kinds.dense import ScaledVectors, VectorEncoding, is_float_list
from deepsets.modality import ModalityInfo


def _is_scalar_list(t: pa.DataType) -> bool:
    """``list<float>`` / ``list<int>`` (not nested): a sequence of scalars."""
    return is_float_list(t) and not is_list_type(t.value_type)


class DenseSequenceFeature(ScaledVectors, BaseFeature):
    """Up to ``max_len`` vectors of ``dim`` floats per row (first ones kept by default).

    With ``dim = 1`` the column may also be a plain ``list<float>`` (or ``list<int>``): each
    value is a 1-d vector, so a sequence of scalars needs no wrapping of each value in a list.
    ``encoding`` scales each dimension as fitted, like ``dense``'s.
    """

    kind: Literal["dense_sequence"]
    dim: PositiveInt  # floats per vector
    max_len: Optional[PositiveInt] = None  # longer rows are cut (and counted); unset: no cut
    truncate: Literal["keep_first", "keep_last"] = "keep_first"  # which vectors a cut row keeps
    positions: Literal["from_start", "from_end"] = (
        "from_start"  # from_end: position 0 is the last vector (a history's most recent)
    )
    encoding: VectorEncoding = "auto"  # each dimension's scaling, fitted by deepsets fit

    def expected_type(self) -> str:
        scalars = " or list<float> (a sequence of scalars)" if self.dim == 1 else ""
        return f"list<list<float>> or list<fixed_size_list<float, {self.dim}>>{scalars}"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        if self.dim == 1 and _is_scalar_list(arrow_type):
            return True
        if not is_list_type(arrow_type) or not is_float_list(arrow_type.value_type):
            return False
        inner = arrow_type.value_type
        return not (pa.types.is_fixed_size_list(inner) and inner.list_size != self.dim)

    def null_type(self, id_type: Optional[str]) -> pa.DataType:
        return pa.list_(pa.list_(pa.float32()))

    def fit_view(self, column: str, dtype: pl.DataType, id_type: Optional[str]) -> pl.Expr:
        if self.encoding == "none":
            return length_view(column, dtype)
        return vector_encodings.values_view(column, dtype, sequence=True, dim=self.dim)

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        return self._fit_scaling(lf, sequence=True, max_len=self.max_len)

    def model_info(self, fitted: Fitted) -> ModalityInfo:
        return replace(super().model_info(fitted), positions_from_end=self.positions == "from_end")

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        column = self.source_column
        outer = split_list(table.column(column))
        if _is_scalar_list(table.schema.field(column).type):  # dim = 1: each value is a vector
            flat = float_values(outer.flat, outer, column, "sequence of scalars")
        else:
            inner = split_list(outer.flat)
            bad = ~inner.valid | (inner.lengths != self.dim)
            if bad.any():
                found = "null" if not inner.valid[bad][0] else f"{int(inner.lengths[bad][0])} floats"
                raise DataError(
                    f"expected every vector to hold {self.dim} floats, found {found}",
                    column=column,
                    rows=np.unique(outer.row_of_element()[bad]),
                )
            flat = float_values(inner.flat, _RowsOf(outer, inner.lengths), column, "vector of a sequence")
        vectors = flat.reshape(-1, self.dim)  # (V, dim)
        present = outer.valid & (outer.lengths > 0)  # (B,)
        cut = truncate(outer.lengths, self.max_len, keep_last=self.truncate == "keep_last")
        counts.rows += present.size
        counts.present_rows += int(present.sum())
        counts.truncated_rows += cut.truncated_rows
        counts.dropped_elements += cut.dropped_elements
        values = torch.from_numpy(
            np.array(self._scaled(vectors[cut.keep], fitted), dtype=np.float32)
        )  # (V', dim), a writable copy
        return ModalityTensors.from_lengths(values, torch.from_numpy(cut.lengths), torch.from_numpy(present))


class _RowsOf:
    """Element -> outer row mapping for floats nested two levels deep (for error messages)."""

    def __init__(self, outer: ListParts, vector_lengths: np.ndarray) -> None:
        self._outer, self._vector_lengths = outer, vector_lengths

    def row_of_element(self) -> np.ndarray:
        return np.repeat(self._outer.row_of_element(), self._vector_lengths)
