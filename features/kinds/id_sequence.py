"""``id_sequence``: an ordered, variable-length list of int or string ids (a click history)."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import torch

from deepsets.batch import ModalityTensors
from deepsets.features.arrow_lists import truncate
from deepsets.features.kinds.base import Fitted, IdListFeature, ModalityCounts, mapped_id_list


class IdSequenceFeature(IdListFeature):
    """Ordered ids, cut to ``max_len`` (keeping the last ones by default: the most recent clicks)."""

    kind: Literal["id_sequence"]
    truncate: Literal["keep_last", "keep_first"] = "keep_last"  # which ids a cut row keeps (keep_last: the most recent)

    def convert(self, table: pa.Table, fitted: Fitted, counts: ModalityCounts) -> ModalityTensors:
        parts, present, indices = mapped_id_list(self, self.mapper(fitted), table, counts)
        cut = truncate(parts.lengths, self.max_len, keep_last=self.truncate == "keep_last")
        counts.truncated_rows += cut.truncated_rows
        counts.dropped_elements += cut.dropped_elements
        values = torch.from_numpy(indices[cut.keep])  # (N',)
        return ModalityTensors.from_lengths(values, torch.from_numpy(cut.lengths), torch.from_numpy(present))
