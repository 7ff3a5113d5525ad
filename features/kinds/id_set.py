"""``id_set``: an unordered list of ids (detected tags). Order never matters downstream.

Each row's ids are put in a canonical order (ascending table index, out-of-vocabulary ids
last) so the batch itself is order-free. Duplicates are kept (a multiset). With ``max_len`` a
row keeps the first ``max_len`` of that order -- with a vocabulary, the most frequent known ids;
with ``hash_buckets``, the lowest buckets (arbitrary, but still independent of the input
order); cut rows are counted.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import torch

from deepsets.batch import ModalityTensors
from deepsets.features.arrow_lists import truncate
from deepsets.features.ids import OOV_INDEX
from deepsets.features.kinds.base import Fitted, IdListFeature, ModalityCounts, mapped_id_list


class IdSetFeature(IdListFeature):
    """An unordered multiset of ids."""

    kind: Literal["id_set"]

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        parts, present, indices = mapped_id_list(self, self.mapper(fitted), table, counts)
        # Sort within rows: rows are contiguous, so sorting row * span + rank does it. The
        # out-of-vocabulary index ranks last (``span - 1``), so a cut keeps known ids first.
        span = self.mapper(fitted).num_embeddings + 1
        oov = (indices == OOV_INDEX) if self.hash_buckets is None else np.zeros(indices.shape, dtype=bool)
        rank = np.where(oov, span - 1, indices)  # (N,) (with hashing, index 1 is a bucket like any other)
        keys = np.sort(parts.row_of_element() * span + rank)  # (N,)
        cut = truncate(parts.lengths, self.max_len, keep_last=False)
        counts.truncated_rows += cut.truncated_rows
        counts.dropped_elements += cut.dropped_elements
        kept = keys[cut.keep] % span
        values = torch.from_numpy(np.where(kept == span - 1, OOV_INDEX, kept))  # (N',)
        return ModalityTensors.from_lengths(values, torch.from_numpy(cut.lengths), torch.from_numpy(present))
