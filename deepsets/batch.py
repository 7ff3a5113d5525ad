"""The model's input contract: per-modality jagged tensors with a presence mask.

A batch of ``B`` rows carries, for each modality, flat ``values`` plus ``offsets`` (for
variable-length kinds) and a ``present`` mask. The same three rows of an ``id_sequence``
modality ``history`` -- ``[7, 3, 9]``, missing, ``[4]`` -- look like this::

    values  = tensor([7, 3, 9, 4])             # (N,)   N = total elements
    offsets = tensor([0, 3, 3, 4])             # (B+1,) row i is values[offsets[i]:offsets[i+1]]
    present = tensor([True, False, True])      # (B,)   a missing row has length 0

    >>> h = ModalityTensors.from_lengths(torch.tensor([7, 3, 9, 4]), torch.tensor([3, 0, 1]))
    >>> h.offsets
    tensor([0, 3, 3, 4])
    >>> h.present
    tensor([ True, False,  True])

Which kinds are variable-length is written in :mod:`deepsets.kinds`. Fixed-size kinds
(``dense``, ``categorical``, ``numeric``) have one element per row and
``offsets = None``: ``values`` is ``(B, dim)``, ``(B,)`` or ``(B, K)``; a missing row holds
zeros and ``present[i] = False``. ``numeric`` also carries ``observed`` ``(B, K)``: False where
a single value was null or NaN (the model replaces it with a learned indicator).

Construction is cheap and does not check anything; call :meth:`FeatureBatch.validate`
(or :meth:`ModalityTensors.validate`) to check the invariants explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

PAD_ID = 0
"""Index 0 of every embedding table is padding and never produced by a mapping."""


def accelerator_available() -> bool:
    """True when torch sees a GPU (or other accelerator) to pin memory for."""
    accel = getattr(torch, "accelerator", None)
    return bool(accel.is_available()) if accel is not None else torch.cuda.is_available()


@dataclass
class ModalityTensors:
    """One modality of a batch.

    Attributes:
        values: float32 ``(B, dim)`` (dense), ``(N, dim)`` (dense_sequence), int64 ``(N,)``
            (id_sequence, id_set), int64 ``(B,)`` (categorical), float32 ``(B, K)`` (numeric).
        present: bool ``(B,)``; False means the modality is missing for that row.
        offsets: int64 ``(B+1,)`` for variable-length kinds, else None.
        observed: bool ``(B, K)`` for numeric, else None.
    """

    values: Tensor
    present: Tensor
    offsets: Optional[Tensor] = None
    observed: Optional[Tensor] = None

    @classmethod
    def from_offsets(cls, values: Tensor, offsets: Tensor, present: Optional[Tensor] = None) -> "ModalityTensors":
        """Jagged modality from flat values and ``(B+1,)`` offsets; present defaults to length > 0."""
        offsets = offsets.to(torch.int64)
        if present is None:
            present = offsets[1:] > offsets[:-1]  # (B,)
        return cls(values=values, present=present, offsets=offsets)

    @classmethod
    def from_lengths(cls, values: Tensor, lengths: Tensor, present: Optional[Tensor] = None) -> "ModalityTensors":
        """Jagged modality from flat values and ``(B,)`` lengths; present defaults to length > 0."""
        lengths = lengths.to(torch.int64)
        offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64)  # (B+1,)
        torch.cumsum(lengths, dim=0, out=offsets[1:])
        return cls.from_offsets(values, offsets, present)

    @classmethod
    def fixed(cls, values: Tensor, present: Tensor, observed: Optional[Tensor] = None) -> "ModalityTensors":
        """Fixed-size modality: one element per row (dense, categorical, numeric)."""
        return cls(values=values, present=present.to(torch.bool), observed=observed)

    @property
    def num_rows(self) -> int:
        return int(self.present.shape[0])

    def lengths(self) -> Tensor:
        """``(B,)`` int64 element count per row (1/0 for fixed-size kinds)."""
        if self.offsets is None:
            return self.present.to(torch.int64)
        return self.offsets[1:] - self.offsets[:-1]

    def row(self, i: int) -> Tensor:
        """Values of row ``i`` (a view): ``(L_i, ...)`` for jagged kinds, ``values[i]`` otherwise."""
        if self.offsets is None:
            return self.values[i]
        return self.values[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def slice(self, start: int, stop: int) -> "ModalityTensors":
        """Rows ``[start, stop)`` as a new modality; values are views, offsets are rebased."""
        present = self.present[start:stop]
        if self.offsets is None:
            observed = None if self.observed is None else self.observed[start:stop]
            return ModalityTensors(self.values[start:stop], present, None, observed)
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return ModalityTensors(self.values[lo:hi], present, self.offsets[start : stop + 1] - lo)

    def take(self, rows: Tensor) -> "ModalityTensors":
        """The given rows ``(R,)`` int64, in that order (repeats allowed), as a new modality."""
        present = self.present[rows]  # (R,)
        if self.offsets is None:
            observed = None if self.observed is None else self.observed[rows]
            return ModalityTensors(self.values[rows], present, None, observed)
        lengths = self.lengths()[rows]  # (R,)
        starts = torch.repeat_interleave(self.offsets[:-1][rows], lengths)  # (N',) each element's row start
        first = torch.cumsum(lengths, 0) - lengths  # (R,) where each taken row starts in the result
        within = torch.arange(int(lengths.sum()), device=lengths.device) - torch.repeat_interleave(
            first, lengths
        )  # (N',)
        return ModalityTensors.from_lengths(self.values[starts + within], lengths, present)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ModalityTensors":
        def move(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return ModalityTensors(move(self.values), move(self.present), move(self.offsets), move(self.observed))

    def pin_memory(self) -> "ModalityTensors":
        """Page-locked copies for fast host-to-GPU transfer; unchanged where no accelerator exists."""

        def pin(t: Optional[Tensor]) -> Optional[Tensor]:
            if t is None or not accelerator_available():
                return t
            return t.pin_memory()

        return ModalityTensors(pin(self.values), pin(self.present), pin(self.offsets), pin(self.observed))

    def validate(self, name: str = "modality") -> None:
        """Check shapes, dtypes and offsets.

        Raises:
            ValueError: naming the modality and the first violated invariant.
        """
        b = self.num_rows
        if self.present.dtype != torch.bool or self.present.dim() != 1:
            raise ValueError(
                f"{name}: present must be a 1-D bool tensor, got {self.present.dtype} {tuple(self.present.shape)}"
            )
        if self.offsets is None:
            if self.values.shape[0] != b:
                raise ValueError(f"{name}: values has {self.values.shape[0]} rows but present has {b}")
            if self.observed is not None and self.observed.shape != self.values.shape:
                raise ValueError(f"{name}: observed {tuple(self.observed.shape)} != values {tuple(self.values.shape)}")
            return
        off = self.offsets
        if off.dim() != 1 or off.numel() != b + 1:
            raise ValueError(f"{name}: offsets must have shape ({b + 1},), got {tuple(off.shape)}")
        if int(off[0]) != 0 or int(off[-1]) != self.values.shape[0]:
            raise ValueError(
                f"{name}: offsets must start at 0 and end at len(values)={self.values.shape[0]}, "
                f"got {int(off[0])}..{int(off[-1])}"
            )
        lengths = off[1:] - off[:-1]
        if bool((lengths < 0).any()):
            bad = int(torch.nonzero(lengths < 0)[0])
            raise ValueError(f"{name}: offsets decrease at row {bad}")
        if bool((lengths[~self.present] != 0).any()):
            bad = int(torch.nonzero((lengths != 0) & ~self.present)[0])
            raise ValueError(f"{name}: row {bad} is marked missing but has {int(lengths[bad])} elements")
        if bool((lengths[self.present] == 0).any()):
            bad = int(torch.nonzero((lengths == 0) & self.present)[0])
            raise ValueError(f"{name}: row {bad} is marked present but has no elements")


def _concat_modality(parts: Sequence[ModalityTensors]) -> ModalityTensors:
    present = torch.cat([p.present for p in parts])
    values = torch.cat([p.values for p in parts])
    if parts[0].offsets is None:
        observed = None if parts[0].observed is None else torch.cat([p.observed for p in parts])
        return ModalityTensors(values, present, None, observed)
    lengths = torch.cat([p.lengths() for p in parts])
    return ModalityTensors.from_lengths(values, lengths, present)


@dataclass
class FeatureBatch:
    """A batch of ``num_rows`` rows: modalities by name, labels by column, and row ids.

    Attributes:
        modalities: modality name -> :class:`ModalityTensors`, every one with ``num_rows`` rows.
        labels: label column -> float32 ``(B,)`` or ``(B, K)``.
        ids: row identifiers, carried along on the host (never moved to a device): a numpy
            array (int64, or object for strings), an int64 tensor, a list, or None.
        num_rows: ``B``.
    """

    modalities: Dict[str, ModalityTensors]
    num_rows: int
    labels: Dict[str, Tensor] = field(default_factory=dict)
    ids: Optional[Any] = None

    def __getitem__(self, name: str) -> ModalityTensors:
        return self.modalities[name]

    @property
    def names(self) -> list[str]:
        """Modality names in sorted order (the order fusion heads use)."""
        return sorted(self.modalities)

    def slice(self, start: int, stop: int) -> "FeatureBatch":
        """Rows ``[start, stop)``."""
        stop = min(stop, self.num_rows)
        return FeatureBatch(
            modalities={k: m.slice(start, stop) for k, m in self.modalities.items()},
            num_rows=stop - start,
            labels={k: v[start:stop] for k, v in self.labels.items()},
            ids=None if self.ids is None else self.ids[start:stop],
        )

    def take(self, rows: Tensor) -> "FeatureBatch":
        """The given rows ``(R,)`` int64, in that order (repeats allowed)."""
        ids = self.ids
        if isinstance(ids, Tensor):
            ids = ids[rows]
        elif isinstance(ids, np.ndarray):
            ids = ids[rows.numpy()]
        elif ids is not None:
            ids = [ids[i] for i in rows.tolist()]
        return FeatureBatch(
            modalities={k: m.take(rows) for k, m in self.modalities.items()},
            num_rows=int(rows.numel()),
            labels={k: v[rows] for k, v in self.labels.items()},
            ids=ids,
        )

    @staticmethod
    def concat(batches: Sequence["FeatureBatch"]) -> "FeatureBatch":
        """Rows of every batch in order; all must have the same modalities and labels."""
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        ids: Optional[Any] = None
        if isinstance(first.ids, Tensor):
            ids = torch.cat([b.ids for b in batches])
        elif isinstance(first.ids, np.ndarray):
            ids = np.concatenate([b.ids for b in batches])
        elif first.ids is not None:
            ids = [i for b in batches for i in b.ids]
        return FeatureBatch(
            modalities={k: _concat_modality([b.modalities[k] for b in batches]) for k in first.modalities},
            num_rows=sum(b.num_rows for b in batches),
            labels={k: torch.cat([b.labels[k] for b in batches]) for k in first.labels},
            ids=ids,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "FeatureBatch":
        return FeatureBatch(
            modalities={k: m.to(device, non_blocking) for k, m in self.modalities.items()},
            num_rows=self.num_rows,
            labels={k: v.to(device, non_blocking=non_blocking) for k, v in self.labels.items()},
            ids=self.ids,
        )

    def pin_memory(self) -> "FeatureBatch":
        """Page-locked copies of every tensor (unchanged where no accelerator exists)."""
        return FeatureBatch(
            modalities={k: m.pin_memory() for k, m in self.modalities.items()},
            num_rows=self.num_rows,
            labels={k: (v.pin_memory() if accelerator_available() else v) for k, v in self.labels.items()},
            ids=self.ids,
        )

    def validate(self) -> None:
        """Check every modality and label against ``num_rows``.

        Raises:
            ValueError: naming the modality or label and what is wrong.
        """
        for name, mod in self.modalities.items():
            if mod.num_rows != self.num_rows:
                raise ValueError(f"{name}: {mod.num_rows} rows, batch has {self.num_rows}")
            mod.validate(name)
        for name, lab in self.labels.items():
            if lab.shape[0] != self.num_rows:
                raise ValueError(f"label {name}: {lab.shape[0]} rows, batch has {self.num_rows}")
        if self.ids is not None and len(self.ids) != self.num_rows:
            raise ValueError(f"ids: {len(self.ids)} rows, batch has {self.num_rows}")
