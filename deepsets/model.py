"""The set-fusion model: encode each modality, summarize it to one vector, fuse the set.

    batch -> per modality: encoder -> tokens -> Summarizer (sequences) -> (B, D)
          -> stack (B, M, D) + presence (B, M) -> SetFusion -> fused (B, D_out) -> TaskHead

``encode`` and ``fuse`` are separate so ablations can encode once and re-run only the fusion
head with modalities masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from deepsets.batch import FeatureBatch


@dataclass
class ModelOutput:
    """What a model returns.

    Attributes:
        fused: (B, D_out) the row's embedding.
        logits: (B, K) task logits.
        modality_vectors: (B, M, D) per-modality vectors in ``names`` order (None for models
            that fuse tokens directly, like the MMT baseline).
        present: (B, M) bool presence used for fusion.
        winners: (B, D) int64 winning modality per dimension for max-pool fusion, else None.
        names: modality names, the order of the M axis.
    """

    fused: Tensor
    logits: Tensor
    modality_vectors: Optional[Tensor]
    present: Tensor
    winners: Optional[Tensor]
    names: Tuple[str, ...]


class SetFusionModel(nn.Module):
    """Deep multi-modal sets: per-modality encoders and summarizers, one fusion head.

    Args:
        names: modality names (any order; the model uses sorted order).
        encoders: name -> encoder returning :class:`deepsets.encoders.Encoded`.
        summarizers: name -> :class:`deepsets.summarize.Summarizer` for variable-length kinds.
        fusion: a ``SetFusion`` (vectors (B, M, D), present (B, M)) -> FusionOutput.
        task_head: fused embedding -> logits.

    Raises:
        ValueError: when an encoder is missing for a name.
    """

    def __init__(
        self,
        names: Sequence[str],
        encoders: nn.ModuleDict,
        summarizers: nn.ModuleDict,
        fusion: nn.Module,
        task_head: nn.Module,
    ) -> None:
        super().__init__()
        self.names = tuple(sorted(names))
        missing = [n for n in self.names if n not in encoders]
        if missing:
            raise ValueError(f"no encoder for modalities {missing}")
        self.encoders, self.summarizers, self.fusion, self.task_head = encoders, summarizers, fusion, task_head

    def encode(self, batch: FeatureBatch) -> Tuple[Tensor, Tensor]:
        """Per-modality vectors ``(B, M, D)`` and presence ``(B, M)``, modalities in sorted order."""
        vectors, present = [], []
        for name in self.names:
            encoded = self.encoders[name](batch[name])
            if encoded.offsets is not None:
                if name not in self.summarizers:
                    raise ValueError(
                        f"modality {name!r}: its encoder returned jagged tokens, but its kind is not summarized "
                        "(KindTraits(summarized=True) gives it a summarizer)"
                    )
                vectors.append(self.summarizers[name](encoded.tokens, encoded.offsets))  # (B, D)
            else:
                vectors.append(encoded.tokens)  # (B, D)
            present.append(encoded.present)
        return torch.stack(vectors, dim=1), torch.stack(present, dim=1)  # (B, M, D), (B, M)

    def fuse(self, vectors: Tensor, present: Tensor) -> ModelOutput:
        """Fuse given per-modality vectors ``(B, M, D)`` under presence ``(B, M)``."""
        out = self.fusion(vectors, present)
        return ModelOutput(out.fused, self.task_head(out.fused), vectors, present, out.winners, self.names)

    def fuse_compact(self, tokens: Tensor, slots: Tensor) -> Tensor:
        """Logits ``(B, K)`` of rows whose present modalities are given compactly: ``tokens``
        ``(B, J, D)`` in modality slots ``slots`` ``(B, J)`` (see ``SetFusion.fuse_compact``)."""
        return self.task_head(self.fusion.fuse_compact(tokens, slots))

    def compact_fuser(self, vectors: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """``fuse(rows (B,), slots (B, J)) -> logits (B, K)``: :meth:`fuse_compact` of
        ``vectors[rows]`` (from (N, M, D)) at ``slots`` (see ``SetFusion.compact_fuser``)."""
        fused = self.fusion.compact_fuser(vectors)
        return lambda rows, slots: self.task_head(fused(rows, slots))

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        vectors, present = self.encode(batch)
        return self.fuse(vectors, present)
