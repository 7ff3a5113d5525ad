"""The straightforward padded model a user writes today (the baseline of benchmarks/speed/model.py).

Per sequence modality: sequences padded to ``max_len`` (every row, missing ones included),
``nn.TransformerEncoder`` with ``src_key_padding_mask``, masked mean. Fixed-size modalities:
a linear layer / embedding / MLP. Fusion: torchmultimodal's ``deepset_transformer`` over the
modality vectors, missing modalities zero-filled.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import Tensor, nn
from torchmultimodal.modules.fusions.deepset_fusion import deepset_transformer

from deepsets.batch import FeatureBatch
from deepsets.kinds import kind_traits
from deepsets.modality import ModalityInfo


def is_sequence(info: ModalityInfo) -> bool:
    """Variable-length kinds: padded to ``max_len`` and run through a transformer here."""
    return kind_traits(info.kind).jagged


def pad_batch(batch: FeatureBatch, max_lens: Dict[str, int]) -> Dict[str, Dict[str, Tensor]]:
    """Padded tensors per modality, as a user's collate with ``pad_sequence`` would produce."""
    out = {}
    for name, m in batch.modalities.items():
        if m.offsets is None:
            out[name] = {"values": m.values, "present": m.present, "observed": m.observed}
            continue
        width = max_lens[name]
        lengths = m.lengths()
        steps = torch.arange(width)
        mask = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (B, L)
        index = (m.offsets[:-1].unsqueeze(1) + steps.unsqueeze(0)) * mask  # (B, L)
        values = m.values[index.reshape(-1)].reshape((batch.num_rows, width) + tuple(m.values.shape[1:]))
        values = values * mask.reshape(mask.shape + (1,) * (values.dim() - 2)).to(values.dtype)
        out[name] = {"values": values, "mask": mask, "present": m.present}
    return out


class PaddedSequenceEncoder(nn.Module):
    """Embed / project, add positions, ``nn.TransformerEncoder`` over the padded rows, masked mean."""

    def __init__(self, info: ModalityInfo, dim: int, heads: int, ff_dim: int, max_len: int) -> None:
        super().__init__()
        self.kind = info.kind
        traits = kind_traits(info.kind)
        self.embed = (
            nn.Linear(info.dim, dim)
            if traits.values == "floats"
            else nn.Embedding(info.num_embeddings, dim, padding_idx=0)
        )
        self.position = nn.Embedding(max_len, dim) if traits.positions else None
        layer = nn.TransformerEncoderLayer(
            dim, heads, ff_dim, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=1)

    def forward(self, values: Tensor, mask: Tensor) -> Tensor:
        x = self.embed(values)  # (B, L, D)
        if self.position is not None:
            x = x + self.position.weight[: x.shape[1]]
        empty = ~mask.any(dim=1)  # rows with nothing: unmask one slot so attention stays finite
        key_padding = ~mask
        key_padding[empty, 0] = False
        x = self.encoder(x, src_key_padding_mask=key_padding)  # (B, L, D)
        weights = mask.unsqueeze(2).to(x.dtype)  # (B, L, 1)
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, D)


class PaddedModel(nn.Module):
    """Padded per-modality transformers + torchmultimodal deepset_transformer, zero-fill."""

    def __init__(
        self,
        infos: Sequence[ModalityInfo],
        max_lens: Dict[str, int],
        dim: int = 128,
        heads: int = 4,
        fusion_layers: int = 2,
    ) -> None:
        super().__init__()
        ff_dim = 4 * dim
        self.infos = {i.name: i for i in infos}
        self.names = sorted(self.infos)
        self.encoders = nn.ModuleDict()
        for name, info in self.infos.items():
            if is_sequence(info):
                self.encoders[name] = PaddedSequenceEncoder(info, dim, heads, ff_dim, max_lens[name])
            elif info.kind == "dense":
                self.encoders[name] = nn.Linear(info.dim, dim)
            elif info.kind == "categorical":
                self.encoders[name] = nn.Embedding(info.num_embeddings, dim, padding_idx=0)
            elif info.kind == "numeric":
                self.encoders[name] = nn.Sequential(
                    nn.Linear(info.num_columns, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim)
                )
            else:
                raise ValueError(f"the padded baseline has no encoder for kind {info.kind!r} (modality {name!r})")
        mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.fusion = deepset_transformer(
            {n: dim for n in self.names}, mlp, num_transformer_att_heads=heads, num_transformer_layers=fusion_layers
        )
        self.head = nn.Linear(dim, 1)

    def forward(self, padded: Dict[str, Dict[str, Tensor]]) -> Tensor:
        embeddings = {}
        for name in self.names:
            p, info = padded[name], self.infos[name]
            if is_sequence(info):
                vec = self.encoders[name](p["values"], p["mask"])
            else:
                vec = self.encoders[name](p["values"])
            embeddings[name] = vec * p["present"].unsqueeze(1).to(vec.dtype)  # zero-fill missing
        return self.head(self.fusion(embeddings))  # (B, 1)
