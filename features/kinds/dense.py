"""``dense``: one fixed-size float vector per row (``list<float>`` or ``fixed_size_list<float>``),
each dimension scaled as fitted (``deepsets.features.vector_encodings``)."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from pydantic import PositiveInt

from deepsets.batch import ModalityTensors
from deepsets.features import vector_encodings
from deepsets.features.arrow_lists import float_values, is_list_type, split_list
from deepsets.features.errors import DataError
from deepsets.features.kinds.base import BaseFeature, Fitted, ModalityCounts, collect_stats, length_view, presence_stats

VectorEncoding = Literal["auto", "standard", "log1p", "none"]


def is_float_list(t: pa.DataType) -> bool:
    return is_list_type(t) and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type))


class ScaledVectors:
    """What ``dense`` and ``dense_sequence`` share: ``encoding`` fitted per dimension.

    With ``encoding = "none"`` fitting reads only list lengths; otherwise it streams the
    values once (``vector_encodings.fit``), gathering the row statistics on the way.
    """

    def _fit_scaling(self, lf: pl.LazyFrame, sequence: bool, max_len: Optional[int]) -> Fitted:
        """Presence (and for sequences length) statistics plus, unless ``encoding`` is
        ``none``, each dimension's encoding, mean and std, in one streaming pass."""
        column = self.source_column
        if self.encoding == "none":  # fit_view: list lengths only
            lengths = pl.col(column)
            present = lengths.is_not_null() & (lengths > 0)
            stats = collect_stats(lf, presence_stats(present, lengths if sequence else None, max_len))
            encodings = ["none"] * self.dim
            return Fitted(
                encodings=encodings, stats={**stats, "encodings": vector_encodings.describe(encodings, False)}
            )
        fitted = vector_encodings.fit(lf, column, self.dim, self.encoding, sequence=sequence, max_len=max_len)
        stats = {
            **fitted["stats"],
            "encodings": vector_encodings.describe(fitted["encodings"], fitted["unit_norm"]),
            "unit_norm_share": fitted["unit_norm_share"],
        }
        return Fitted(encodings=fitted["encodings"], mean=fitted["mean"], std=fitted["std"], stats=stats)

    def _scaled(self, vectors: np.ndarray, fitted: Fitted) -> np.ndarray:
        """(V, dim) float32 model values of present vectors (raw for specs fitted before encodings)."""
        return vector_encodings.apply(vectors, fitted.encodings, fitted.mean, fitted.std)


class DenseFeature(ScaledVectors, BaseFeature):
    """A fixed-size vector of ``dim`` floats; null or empty = missing.

    ``encoding`` scales each dimension as fitted: ``auto`` (default), ``standard``, ``log1p``
    or ``none`` (raw values); ``deepsets.features.vector_encodings`` has the ``auto`` rule.
    """

    kind: Literal["dense"]
    dim: PositiveInt  # floats per vector
    encoding: VectorEncoding = "auto"  # each dimension's scaling, fitted by deepsets fit

    def expected_type(self) -> str:
        return f"list<float> or fixed_size_list<float, {self.dim}>"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        if pa.types.is_fixed_size_list(arrow_type) and arrow_type.list_size != self.dim:
            return False
        return is_float_list(arrow_type)

    def null_type(self, id_type: Optional[str]) -> pa.DataType:
        return pa.list_(pa.float32())

    def fit_view(self, column: str, dtype: pl.DataType, id_type: Optional[str]) -> pl.Expr:
        if self.encoding == "none":
            return length_view(column, dtype)
        return vector_encodings.values_view(column, dtype, sequence=False, dim=self.dim)

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        return self._fit_scaling(lf, sequence=False, max_len=None)

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
        vectors = self._scaled(flat.reshape(-1, self.dim), fitted)  # (P, dim)
        b = present.size
        if present.all():
            values = torch.from_numpy(np.array(vectors, dtype=np.float32))  # (B, dim), a writable copy
        else:
            dense = np.zeros((b, self.dim), dtype=np.float32)  # (B, dim), zeros where missing
            dense[present] = vectors
            values = torch.from_numpy(dense)
        counts.rows += b
        counts.present_rows += int(present.sum())
        return ModalityTensors.fixed(values, torch.from_numpy(present))
