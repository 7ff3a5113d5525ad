"""Two-tower retrieval: a query tower and an item tower, each a set-fusion model over its own
modalities, trained so a query's embedding is close to the embeddings of its items.

    model = build_model(spec.model_inputs(), task="two_tower",
                        query_modalities=["history", "user_genres"], item_modalities=["title", "genres"])
    out = model(batch)                     # out.query (B, D), out.item (B, D), unit length
    loss = model.loss(out, item_ids, item_log_q)
    model.tower("item")(item_batch).fused  # index the items offline; score = query @ item.T

Each tower is a :class:`deepsets.model.SetFusionModel` whose task head is a linear projection
into the shared space; :class:`Tower` L2-normalizes that projection and returns it as the
row's embedding (``fused``), so a tower runs anywhere a one-tower model does (``deepsets
embed --tower``): dot products of stored embeddings are the cosine similarities it was
trained on. A tower only reads its own modalities: the other side's may be absent.

Shortcuts (``shortcuts=[("ease_recent", "ease_item")]``, wide-and-deep style): each pair's
query and item modality vectors (their encoders' outputs, before fusion) are appended, times a
learned scale, to the towers' fused embeddings before the final L2 normalization, so the
score gains their own dot product beside the fused one: a feature that already is a good
two-tower score (a projected EASE side, say) reaches the score without passing through fusion.
The embedding is then ``D * (1 + len(shortcuts))`` wide, still unit length; a missing or
ablated modality adds a zero part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepsets.batch import FeatureBatch
from deepsets.model import ModelOutput
from deepsets.ranking import InBatchSoftmax

TOWERS = ("query", "item")


class Tower(nn.Module):
    """One side of a two-tower model: a set-fusion model whose task head projects to the
    shared space; its output ``fused`` (and ``logits``) is the unit-length embedding.

    Args:
        model: a :class:`deepsets.model.SetFusionModel` over this side's modalities, with a
            linear head of width ``D`` (the shared space).
        shortcuts: this side's modality of each shortcut pair, in pair order (repeats allowed):
            their vectors are appended to the embedding (see the module docstring).
        dim: ``D``, the width of a modality vector (sets the shortcuts' starting scale).

    Raises:
        ValueError: for a shortcut that is not one of the model's modalities.
    """

    def __init__(self, model: nn.Module, shortcuts: Sequence[str] = (), dim: int = 1) -> None:
        super().__init__()
        self.model = model
        unknown = sorted(set(shortcuts) - set(model.names))
        if unknown:
            raise ValueError(f"shortcut modalities {unknown} are not in this tower ({', '.join(model.names)})")
        self.shortcuts = tuple(shortcuts)
        self.shortcut_slots = [model.names.index(name) for name in self.shortcuts]
        if self.shortcuts:  # a starting part about as long as the unit-length fused one
            self.shortcut_scale = nn.Parameter(torch.full((len(self.shortcuts),), dim**-0.5))

    @property
    def names(self) -> tuple:
        return self.model.names

    def encode(self, batch: FeatureBatch):
        """Per-modality vectors ``(B, M, D)`` and presence ``(B, M)`` of this side."""
        return self.model.encode(batch)

    def embedding(self, projected: Tensor, shortcut: Optional[Tensor] = None) -> Tensor:
        """The unit-length embedding ``(B, D')`` of the head's output ``projected`` ``(B, D)``
        and the shortcut modalities' vectors ``shortcut`` ``(B, P, D)`` (zero where absent)."""
        embedding = F.normalize(projected, dim=-1)  # (B, D)
        if not self.shortcuts:
            return embedding
        scaled = (shortcut * self.shortcut_scale[:, None].to(shortcut.dtype)).flatten(1)  # (B, P * D)
        return F.normalize(torch.cat([embedding, scaled], dim=-1), dim=-1)  # (B, D * (1 + P))

    def _shortcut(self, vectors: Tensor, present: Tensor) -> Optional[Tensor]:
        """(B, P, D): each shortcut modality's vector among ``vectors`` (B, M, D), zero where
        ``present`` (B, M) says it is absent; None without shortcuts."""
        if not self.shortcuts:
            return None
        slots = self.shortcut_slots
        return vectors[:, slots] * present[:, slots].unsqueeze(-1).to(vectors.dtype)  # (B, P, D)

    def fuse(self, vectors: Tensor, present: Tensor) -> ModelOutput:
        out = self.model.fuse(vectors, present)
        embedding = self.embedding(out.logits, self._shortcut(vectors, present))  # (B, D')
        return ModelOutput(embedding, embedding, out.modality_vectors, out.present, out.winners, out.names)

    def _compact_shortcut(self, tokens: Tensor, slots: Tensor) -> Optional[Tensor]:
        """(B, P, D): each shortcut modality's token among ``tokens`` (B, J, D) at ``slots``
        (B, J), zero where it is not given."""
        if not self.shortcuts:
            return None
        parts = [
            (tokens * (slots == slot).unsqueeze(-1).to(tokens.dtype)).sum(dim=1) for slot in self.shortcut_slots
        ]  # P x (B, D)
        return torch.stack(parts, dim=1)  # (B, P, D)

    def fuse_compact(self, tokens: Tensor, slots: Tensor) -> Tensor:
        """This side's unit-length embeddings ``(B, D')`` of rows given compactly (see
        ``SetFusionModel.fuse_compact``)."""
        return self.embedding(self.model.fuse_compact(tokens, slots), self._compact_shortcut(tokens, slots))

    def compact_fuser(self, vectors: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """This side's unit-length embeddings of ``vectors[rows]`` at ``slots`` (see
        ``SetFusionModel.compact_fuser``)."""
        fused = self.model.compact_fuser(vectors)

        def fuse(rows: Tensor, slots: Tensor) -> Tensor:
            given = torch.zeros(slots.shape[0], vectors.shape[1], dtype=torch.bool, device=slots.device).scatter_(
                1, slots, True
            )  # (B, M)
            return self.embedding(fused(rows, slots), self._shortcut(vectors[rows], given))

        return fuse

    def forward(self, batch: FeatureBatch) -> ModelOutput:
        return self.fuse(*self.encode(batch))


@dataclass
class TwoTowerOutput:
    """Both sides' unit-length embeddings of a batch of (query, item) rows: (B, D) each; and,
    when extra negative items were given, theirs: (S, D)."""

    query: Tensor
    item: Tensor
    negatives: Optional[Tensor] = None


class TwoTowerModel(nn.Module):
    """A query tower, an item tower and their in-batch sampled softmax loss.

    Args:
        query: the query :class:`Tower`.
        item: the item :class:`Tower`.
        loss: an :class:`deepsets.ranking.InBatchSoftmax` (owns the learnable temperature).

    Raises:
        ValueError: when the towers share a modality.
    """

    def __init__(self, query: Tower, item: Tower, loss: InBatchSoftmax) -> None:
        super().__init__()
        shared = sorted(set(query.names) & set(item.names))
        if shared:
            raise ValueError(f"the query and item towers must not share modalities, both have {shared}")
        self.query, self.item, self.loss_fn = query, item, loss

    @property
    def names(self) -> tuple:
        """Every modality either tower reads, sorted."""
        return tuple(sorted(self.query.names + self.item.names))

    def tower(self, side: str) -> Tower:
        """The ``"query"`` or ``"item"`` tower.

        Raises:
            ValueError: for another name.
        """
        if side not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}, got {side!r}")
        return self.query if side == "query" else self.item

    def forward(self, batch: FeatureBatch, negatives: Optional[FeatureBatch] = None) -> TwoTowerOutput:
        """Both towers on ``batch``; the item tower also on ``negatives`` (extra negative items,
        run here so that a data-parallel wrapper sees one forward pass)."""
        extra = self.item(negatives).fused if negatives is not None else None  # (S, D)
        return TwoTowerOutput(self.query(batch).fused, self.item(batch).fused, extra)  # (B, D), (B, D)

    def loss(
        self,
        out: TwoTowerOutput,
        item_ids: Optional[Tensor] = None,
        item_log_q: Optional[Tensor] = None,
        extra_items: Optional[Tensor] = None,
        extra_ids: Optional[Tensor] = None,
        extra_log_q: Optional[Tensor] = None,
    ) -> Tensor:
        """Softmax of each query against the batch's items and any extra negatives (see
        ``InBatchSoftmax``).

        Args:
            out: this model's output on a batch.
            item_ids: (B,) item ids: repeats of an item are not negatives of each other.
            item_log_q: (B,) log sampling probability of each row's item (logQ correction).
            extra_items: (S, D) extra negatives' embeddings (default: ``out.negatives``).
            extra_ids: (S,) their item ids (an extra that is one of the batch's items is left out).
            extra_log_q: (S,) their logit corrections.
        """
        extra = extra_items if extra_items is not None else out.negatives
        return self.loss_fn(
            out.query,
            out.item,
            item_log_q=item_log_q,
            item_ids=item_ids,
            extra_items=extra,
            extra_ids=extra_ids,
            extra_log_q=extra_log_q,
        )
