"""What the model needs to know about each modality: plain values, no config objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from deepsets.batch import KINDS


@dataclass(frozen=True)
class ModalityInfo:
    """One modality as the model sees it.

    Attributes:
        name: modality name (models order modalities by sorted name).
        kind: one of dense, dense_sequence, id_sequence, id_set, categorical, numeric.
        dim: vector width (dense, dense_sequence).
        num_embeddings: embedding-table rows, padding and OOV included (id kinds).
        num_columns: number of columns (numeric).
        max_len: longest row the model will see (sequences; sizes position embeddings).

    Raises:
        ValueError: when a field the kind needs is missing.
    """

    name: str
    kind: str
    dim: Optional[int] = None
    num_embeddings: Optional[int] = None
    num_columns: Optional[int] = None
    max_len: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"modality {self.name!r}: unknown kind {self.kind!r} (expected one of {KINDS})")
        needs = {
            "dense": "dim",
            "dense_sequence": "dim",
            "id_sequence": "num_embeddings",
            "id_set": "num_embeddings",
            "categorical": "num_embeddings",
            "numeric": "num_columns",
        }[self.kind]
        if getattr(self, needs) is None or getattr(self, needs) < 1:
            raise ValueError(f"modality {self.name!r} ({self.kind}) needs a positive {needs}, got {getattr(self, needs)}")
