"""``id_set``: an unordered list of ids (detected tags). Order never matters downstream.

Each row's ids are put in a canonical order (ascending table index, i.e. most frequent
first) so the batch itself is order-free. Duplicates are kept (a multiset). With ``max_len``
a row keeps its ``max_len`` lowest indices -- the most frequent ids -- which also does not
depend on the input order; cut rows are counted.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import torch

from deepsets.batch import ModalityTensors
from features.arrow_lists import truncate
from features.kinds.base import Fitted, IdListFeature, ModalityCounts, mapped_id_list


class IdSetFeature(IdListFeature):
    """An unordered multiset of ids."""

    kind: Literal["id_set"]

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        parts, present, indices = mapped_id_list(self, self.mapper(fitted), table, counts)
        # Sort within rows: rows are contiguous, so sorting row * table_size + index does it.
        table_size = self.mapper(fitted).num_embeddings
        keys = np.sort(parts.row_of_element() * table_size + indices)  # (N,)
        cut = truncate(parts.lengths, self.max_len, keep_last=False)
        counts.truncated_rows += cut.truncated_rows
        counts.dropped_elements += cut.dropped_elements
        values = torch.from_numpy(keys[cut.keep] % table_size)  # (N',)
        return ModalityTensors.from_lengths(values, torch.from_numpy(cut.lengths), torch.from_numpy(present))
