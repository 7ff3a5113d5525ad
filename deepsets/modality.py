"""What the model needs to know about each modality: plain values, no config objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

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
        periodic_columns: numeric: positions of the values that get a learned periodic
            embedding (``encoding = "periodic"`` in the schema).
        positions_from_end: dense_sequence: number positions from the row's last element
            (0 = most recent, as in a history) instead of its first.

    Raises:
        ValueError: for an unknown kind, or when the size the kind needs is missing.
    """

    name: str
    kind: str
    dim: Optional[int] = None
    num_embeddings: Optional[int] = None
    num_columns: Optional[int] = None
    max_len: Optional[int] = None
    periodic_columns: Tuple[int, ...] = ()
    positions_from_end: bool = False

    def __post_init__(self) -> None:
        try:
            needs = kind_traits(self.kind).needs
        except ValueError as err:
            raise ValueError(f"modality {self.name!r}: {err}") from None
        size = getattr(self, needs)
        if size is None or size < 1:
            raise ValueError(f"modality {self.name!r} ({self.kind}) needs a positive {needs}, got {size}")
        object.__setattr__(self, "periodic_columns", tuple(self.periodic_columns))
        outside = [i for i in self.periodic_columns if not 0 <= i < (self.num_columns or 0)]
        if outside:
            raise ValueError(
                f"modality {self.name!r}: periodic_columns {outside} outside its {self.num_columns} values"
            )
