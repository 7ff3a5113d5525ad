"""The small in-process training loop the benchmarks share (no Ray: only the model matters)."""

from __future__ import annotations

from typing import List, Optional

import torch

from deepsets.features.reader import ParquetBatchReader
from deepsets.tasks import task_loss


def train_in_process(
    model,
    spec,
    files,
    label: str,
    task: str,
    *,
    epochs: int = 1,
    batch_size: int = 256,
    lr: float = 2e-3,
    shuffle_seed: Optional[int] = None,
) -> List[float]:
    """AdamW over every row of ``files`` for ``epochs`` (rows shuffled per epoch when
    ``shuffle_seed`` is given); returns the loss of each step. The model is left in eval mode."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for epoch in range(epochs):
        seed = None if shuffle_seed is None else shuffle_seed * 100 + epoch
        for batch in ParquetBatchReader(spec, files, batch_size=batch_size, label_columns=[label], shuffle_seed=seed):
            loss = task_loss(task, model(batch).logits, batch.labels[label])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    return losses
