"""Baseline: an MMT-style single transformer over every token of every modality.

Each row becomes one sequence ``[CLS, tokens of modality 1, tokens of modality 2, ...]``; each
token carries a learned modality-type embedding (and its position embedding from its encoder).
Missing modalities contribute no tokens. The CLS output is the fused embedding. Unlike set
fusion, attention cost grows with the square of the row's total token count.
"""

from __future__ import annotations

import functools
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from deepsets.batch import FeatureBatch
from deepsets.jagged import bucket_layout, length_buckets, positions, row_ids
from deepsets.model import ModelOutput
from deepsets.summarize import JaggedTransformerLayer


class MMTModel(nn.Module):
    """One transformer over all tokens of all modalities.

    Args:
        names: modality names (sorted internally).
        encoders: name -> encoder returning ``Encoded`` tokens of width ``dim``.
        dim: token width.
        layers: transformer layers.
        heads: attention heads.
        ff_dim: feed-forward width.
        task_head: fused embedding -> logits.
        dropout: dropout inside the layers.
        modality_dropout: in training, drop each present modality of a row with this rate.
    """

    def __init__(
        self,
        names: Sequence[str],
        encoders: nn.ModuleDict,
        dim: int,
        layers: int,
        heads: int,
        ff_dim: int,
        task_head: nn.Module,
        dropout: float = 0.0,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.names = tuple(sorted(names))
        self.encoders, self.task_head = encoders, task_head
        self.modality_type = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)
        self.layers = nn.ModuleList(JaggedTransformerLayer(dim, heads, ff_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.modality_dropout = modality_dropout

    def _modality_tokens(self, batch: FeatureBatch) -> Tuple[List[Tensor], List[Tensor], Tensor]:
        """Per modality: kept tokens (n_m, D) and their lengths per row (B,); presence (B, M)."""
        tokens, lengths, present = [], [], []
        for m, name in enumerate(self.names):
            enc = self.encoders[name](batch[name])
            keep = enc.present
            if self.training and self.modality_dropout > 0:
                keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.modality_dropout)
            if enc.offsets is None:
                offsets = torch.arange(keep.numel() + 1, device=keep.device)  # one token per row
            else:
                offsets = enc.offsets
            row_len = (offsets[1:] - offsets[:-1]) * keep  # (B,)
            token_keep = keep[row_ids(offsets)]  # (N,)
            tokens.append(enc.tokens[token_keep] + self.modality_type[m])  # (n_m, D)
            lengths.append(row_len)
            present.append(keep)
        return tokens, lengths, torch.stack(present, dim=1)

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        tokens, lengths, present = self._modality_tokens(batch)
        per_row = torch.stack(lengths, dim=1)  # (B, M)
        total = 1 + per_row.sum(dim=1)  # (B,) CLS + all tokens
        offsets = torch.zeros(total.numel() + 1, dtype=torch.int64, device=total.device)
        torch.cumsum(total, dim=0, out=offsets[1:])
        before = torch.cumsum(per_row, dim=1) - per_row  # (B, M) tokens of earlier modalities
        dtype = functools.reduce(torch.promote_types, [t.dtype for t in tokens])  # encoders may differ under autocast
        sequence = tokens[0].new_empty(int(offsets[-1]), self.cls.numel(), dtype=dtype)  # (T, D)
        sequence[offsets[:-1]] = self.cls.to(sequence.dtype)
        for m, (tok, row_len) in enumerate(zip(tokens, lengths)):
            mod_offsets = torch.zeros(row_len.numel() + 1, dtype=torch.int64, device=row_len.device)
            torch.cumsum(row_len, dim=0, out=mod_offsets[1:])
            rows = row_ids(mod_offsets)  # (n_m,)
            dest = offsets[:-1][rows] + 1 + before[rows, m] + positions(mod_offsets)  # (n_m,)
            sequence[dest] = tok.to(dtype)
        layout = bucket_layout(offsets, length_buckets(offsets[1:] - offsets[:-1]))
        for layer in self.layers:
            sequence = layer(sequence, layout)  # (T, D)
        fused = self.norm(sequence[offsets[:-1]])  # (B, D) the CLS tokens
        return ModelOutput(fused, self.task_head(fused), None, present, None, self.names)
