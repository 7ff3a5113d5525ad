"""Random FeatureBatches for model tests (no I/O): every kind, chosen lengths and presence."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch

from deepsets.batch import FeatureBatch, ModalityTensors
from deepsets.kinds import kind_traits
from deepsets.modality import ModalityInfo

INFOS = [
    ModalityInfo("image", "dense", dim=12),
    ModalityInfo("frames", "dense_sequence", dim=6, max_len=40),
    ModalityInfo("history", "id_sequence", num_embeddings=60, max_len=40),
    ModalityInfo("tags", "id_set", num_embeddings=30),
    ModalityInfo("country", "categorical", num_embeddings=9),
    ModalityInfo("profile", "numeric", num_columns=3),
]


def random_modality(
    info: ModalityInfo, present: torch.Tensor, lengths: torch.Tensor, g: torch.Generator
) -> ModalityTensors:
    """One modality for rows with the given presence and (for sequences) lengths."""
    b = present.numel()
    if kind_traits(info.kind).jagged:
        lengths = torch.where(present, lengths.clamp(min=1), torch.zeros_like(lengths))
        n = int(lengths.sum())
        if info.kind == "dense_sequence":
            values = torch.randn(n, info.dim, generator=g)
        else:
            values = torch.randint(2, info.num_embeddings, (n,), generator=g)
        return ModalityTensors.from_lengths(values, lengths, present)
    if info.kind == "dense":
        return ModalityTensors.fixed(torch.randn(b, info.dim, generator=g) * present.unsqueeze(1), present)
    if info.kind == "categorical":
        return ModalityTensors.fixed(torch.randint(2, info.num_embeddings, (b,), generator=g) * present, present)
    observed = (torch.rand(b, info.num_columns, generator=g) > 0.2) & present.unsqueeze(1)
    observed[present & ~observed.any(dim=1), 0] = True
    values = torch.randn(b, info.num_columns, generator=g) * observed
    return ModalityTensors.fixed(values, present, observed)


def random_batch(
    b: int,
    seed: int,
    infos: Sequence[ModalityInfo] = INFOS,
    presence: float = 0.8,
    max_len: int = 30,
    present: Optional[Dict[str, torch.Tensor]] = None,
) -> FeatureBatch:
    """``b`` random rows; ``present`` overrides the presence of named modalities."""
    g = torch.Generator().manual_seed(seed)
    mods = {}
    for info in infos:
        p = present[info.name] if present and info.name in present else torch.rand(b, generator=g) < presence
        lengths = torch.randint(1, max_len + 1, (b,), generator=g)
        mods[info.name] = random_modality(info, p, lengths, g)
    batch = FeatureBatch(mods, b, labels={"y": (torch.rand(b, generator=g) > 0.5).float()})
    batch.validate()
    return batch


def concat_rows(*batches: FeatureBatch) -> FeatureBatch:
    return FeatureBatch.concat(list(batches))
