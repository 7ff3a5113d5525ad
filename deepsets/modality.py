"""What the model needs to know about each modality: plain values, no config objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from deepsets.kinds import kind_traits


@dataclass(frozen=True)
class ModalityInfo:
    """One modality as the model sees it.

    Attributes:
        name: modality name (models order modalities by sorted name).
        kind: a registered kind (``deepsets.kinds``): dense, dense_sequence, id_sequence,
            id_set, categorical, numeric, or one added with ``register_kind``.
        dim: vector width (kinds sized by ``dim``: dense, dense_sequence).
        num_embeddings: embedding-table rows, padding and OOV included (id kinds).
        num_columns: number of columns (numeric).
        max_len: longest row the model will see (kinds with positions; sizes position
            embeddings; None = the encoder's default).

    Raises:
        ValueError: for an unknown kind, or when the size the kind needs is missing.
    """

    name: str
    kind: str
    dim: Optional[int] = None
    num_embeddings: Optional[int] = None
    num_columns: Optional[int] = None
    max_len: Optional[int] = None

    def __post_init__(self) -> None:
        try:
            needs = kind_traits(self.kind).needs
        except ValueError as err:
            raise ValueError(f"modality {self.name!r}: {err}") from None
        size = getattr(self, needs)
        if size is None or size < 1:
            raise ValueError(f"modality {self.name!r} ({self.kind}) needs a positive {needs}, got {size}")
