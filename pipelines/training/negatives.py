"""Where a two-tower model's negatives come from, besides the other items of the batch.

| ``task.negatives`` | negatives of each query                       | logit correction              |
|--------------------|-----------------------------------------------|-------------------------------|
| ``in_batch``       | the batch's other items                       | ``log q`` (item popularity)   |
| ``mixed``          | those, plus ``num_negatives`` items drawn     | ``log(B q + S / I)``: each    |
|                    | uniformly from the item table every step      | item's expected count in the  |
|                    | (run through the item tower with gradient)    | mixed sample (Yang et al. 2020)|
| ``catalogue``      | every item of the item table: a full softmax  | none in the full softmax      |
|                    | (items not in the batch from item-tower       | (every item is there once);   |
|                    | outputs refreshed every ``refresh_steps``),   | ``log q`` in the in-batch one |
|                    | training the query tower only; plus the       |                               |
|                    | in-batch softmax, training both towers        |                               |

In-batch negatives see popular items too often and rare ones almost never; uniform samples and
the whole catalogue show the model the items it would otherwise never be asked to tell apart.
The item table (``data.items``) holds one row per item: the item modalities and the item id
column (``data.item_column``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from deepsets.batch import FeatureBatch
from deepsets.choices import NEGATIVES
from deepsets.features.errors import DataError
from deepsets.features.reader import ParquetBatchReader


class ItemCatalogue:
    """Every item of the item table, as one batch of the item tower's modalities.

    Args:
        spec: the item tower's spec (``spec.subset(item_modalities)``).
        paths: the item table's files.
        item_column: the integer item id column.

    Raises:
        DataError: for a bad item table, or an item id listed twice.
    """

    def __init__(self, spec, paths: Sequence[str], item_column: str) -> None:
        reader = ParquetBatchReader(spec, list(paths), batch_size=65536, key_columns=[item_column])
        self.items = FeatureBatch.concat(list(reader))
        self.ids = self.items.labels.pop(item_column)  # (I,) int64
        unique, counts = torch.unique(self.ids, return_counts=True)
        if bool((counts > 1).any()):
            twice = unique[counts > 1][:5].tolist()
            raise DataError(
                f"item table lists {int((counts > 1).sum())} item id(s) more than once (e.g. {twice}): one row per item",
                column=item_column,
            )

    def __len__(self) -> int:
        return int(self.ids.numel())

    def sample(self, count: int, generator: torch.Generator) -> tuple[FeatureBatch, Tensor]:
        """``count`` items drawn uniformly with replacement: their rows and ids."""
        rows = torch.randint(len(self), (count,), generator=generator)  # (S,)
        return self.items.take(rows), self.ids[rows]

    @torch.no_grad()
    def embed(self, tower: nn.Module, device: torch.device, chunk: int = 4096) -> Tensor:
        """Every item's embedding ``(I, D)`` by ``tower`` in eval mode (no gradient)."""
        was_training = tower.training
        tower.eval()
        try:
            return torch.cat(
                [
                    tower(self.items.slice(start, start + chunk).to(device)).fused.float()
                    for start in range(0, len(self), chunk)
                ]
            )
        finally:
            tower.train(was_training)


class Negatives:
    """The extra negatives of each training step and their logit corrections.

    Args:
        mode: one of :data:`NEGATIVES`.
        catalogue: the item table (``mixed`` and ``catalogue``).
        num_negatives: ``mixed``: items drawn per step.
        refresh_steps: ``catalogue``: steps between recomputing the catalogue's embeddings.
        seed: the draws of ``mixed`` follow it (per step and rank).
    """

    def __init__(
        self,
        mode: str,
        catalogue: Optional[ItemCatalogue] = None,
        num_negatives: int = 1024,
        refresh_steps: int = 1,
        seed: int = 0,
    ) -> None:
        if mode not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {mode!r}")
        if mode != "in_batch" and catalogue is None:
            raise ValueError(f"{mode} negatives need the item table (data.items)")
        self.mode, self.catalogue, self.num_negatives, self.refresh_steps = (
            mode,
            catalogue,
            num_negatives,
            refresh_steps,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.cached: Optional[Tensor] = None
        self.steps = 0

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def draw(self) -> tuple[Optional[FeatureBatch], Optional[Tensor]]:
        """``mixed``: this step's sampled item rows and ids (to run through the item tower with
        the batch); otherwise ``(None, None)``."""
        if self.mode != "mixed":
            return None, None
        return self.catalogue.sample(self.num_negatives, self.generator)

    def catalogue_embeddings(self, item_tower: nn.Module, device: torch.device) -> Optional[tuple[Tensor, Tensor]]:
        """``catalogue``: ``(embeddings (I, D), ids (I,))``, recomputed every ``refresh_steps``
        calls; otherwise None."""
        if self.mode != "catalogue":
            return None
        if self.cached is None or self.steps % self.refresh_steps == 0:
            self.cached = self.catalogue.embed(item_tower, device)
        self.steps += 1
        return self.cached, self.catalogue.ids.to(device)

    def log_q(
        self, batch_log_q: Optional[Tensor], sampled_log_q: Optional[Tensor], batch_size: int
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """The logit corrections of the batch's items and of the sampled ones.

        ``mixed``: an item's expected count among one step's negatives, ``B q + S / I``, for
        both (q from the training rows); ``in_batch``: ``log q`` as given; ``catalogue``: none
        here (its full softmax needs none; its in-batch softmax takes ``log q`` as given).
        """
        if self.mode == "catalogue" or batch_log_q is None:
            return None, None
        if self.mode == "in_batch":
            return batch_log_q, None
        uniform = self.num_negatives / len(self.catalogue)

        def mixed(log_q: Tensor) -> Tensor:
            return torch.log(batch_size * log_q.exp() + uniform)

        return mixed(batch_log_q), mixed(sampled_log_q)


def item_catalogue_or_none(cfg, spec) -> Optional[ItemCatalogue]:
    """The item table of a two_tower run whose negatives need it, else None."""
    if cfg.model.task != "two_tower" or cfg.task.negatives == "in_batch":
        return None
    return ItemCatalogue(spec.subset(list(cfg.model.item_modalities)), list(cfg.data.items), cfg.data.item_column)
