"""``id_sequence``: an ordered, variable-length list of int or string ids (a click history)."""

from __future__ import annotations

from typing import Literal, Optional

import polars as pl
import pyarrow as pa
import torch
from pydantic import PositiveInt

from deepsets.batch import ModalityTensors
from features.arrow_lists import truncate
from features.kinds.base import (
    BaseFeature,
    Fitted,
    IdVocabulary,
    ModalityCounts,
    fit_id_list,
    id_dtype,
    id_list_type_ok,
    mapped_id_list,
)


class IdSequenceFeature(BaseFeature, IdVocabulary):
    """Ordered ids, cut to ``max_len`` (keeping the last ones by default: the most recent clicks)."""

    kind: Literal["id_sequence"]
    max_len: Optional[PositiveInt] = None
    truncate: Literal["keep_last", "keep_first"] = "keep_last"

    def expected_type(self) -> str:
        return "list<int> or list<string>"

    def accepts(self, column: str, arrow_type: pa.DataType) -> bool:
        return id_list_type_ok(arrow_type)

    def num_embeddings(self, fitted: Fitted) -> Optional[int]:
        return self.mapper(fitted).num_embeddings

    def fit_dtype(self, id_type: Optional[str]) -> pl.DataType:
        return pl.List(id_dtype(id_type))

    def fit(self, lf: pl.LazyFrame) -> Fitted:
        return fit_id_list(self, self, lf, self.max_len)

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        parts, present, indices = mapped_id_list(self, self.mapper(fitted), table, counts)
        cut = truncate(parts.lengths, self.max_len, keep_last=self.truncate == "keep_last")
        counts.truncated_rows += cut.truncated_rows
        counts.dropped_elements += cut.dropped_elements
        values = torch.from_numpy(indices[cut.keep])  # (N',)
        return ModalityTensors.from_lengths(values, torch.from_numpy(cut.lengths), torch.from_numpy(present))
