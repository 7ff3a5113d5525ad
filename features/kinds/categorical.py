"""``categorical``: one int or string category per row; null = missing."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import torch

from deepsets.batch import ModalityTensors
from deepsets.features.arrow_lists import valid_mask
from deepsets.features.ids import id_type_of
from deepsets.features.kinds.base import (
    BaseFeature,
    Fitted,
    IdVocabulary,
    ModalityCounts,
    collect_stats,
    id_arrow_type,
    id_dtype,
    presence_stats,
)


class CategoricalFeature(BaseFeature, IdVocabulary):
    """A scalar category mapped through a vocabulary (or hashed); a missing row holds index 0."""

    kind: Literal["categorical"]

    def expected_type(self) -> str:
        return "an int or string scalar (dictionary-encoded allowed)"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        return id_type_of(arrow_type) is not None

    def num_embeddings(self, fitted: Fitted) -> Optional[int]:
        return self.mapper(fitted).num_embeddings

    def fit_dtype(self, id_type: Optional[str]) -> pl.DataType:
        return id_dtype(id_type)

    def null_type(self, id_type: Optional[str]) -> pa.DataType:
        return id_arrow_type(id_type)

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        col = pl.col(self.source_column)
        dtype = lf.collect_schema()[self.source_column]
        stats = collect_stats(lf, presence_stats(col.is_not_null(), None, None))
        fitted = self.fit_ids(lf.select(col.alias("id")), "int" if dtype.is_integer() else "string")
        fitted.stats = {**stats, **fitted.stats}
        return fitted

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        arr = table.column(self.source_column).combine_chunks()
        present = valid_mask(arr)  # (B,)
        mapper = self.mapper(fitted)
        given = arr.filter(pa.array(present)) if not present.all() else arr
        given = mapper.check(given, self.source_column, lambda: np.nonzero(present)[0])
        indices, oov = mapper.map(given)
        values = np.zeros(present.size, dtype=np.int64)  # (B,), 0 = padding where missing
        values[present] = indices
        counts.rows += present.size
        counts.present_rows += int(present.sum())
        counts.ids += int(indices.size)
        counts.oov_ids += oov
        return ModalityTensors.fixed(torch.from_numpy(values), torch.from_numpy(present))
