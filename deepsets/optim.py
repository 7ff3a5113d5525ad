"""Optimizers and learning-rate schedules by name (``deepsets.choices.OPTIMIZERS`` / ``SCHEDULES``).

optimizer = make_optimizer(model, "adamw", lr=1e-3, weight_decay=0.01)
scheduler = make_scheduler(optimizer, "cosine", total_steps=1000, warmup_steps=50)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepsets.choices import OPTIMIZERS, SCHEDULES


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """adamw, adam or sgd (momentum 0.9) over the parameters that need a gradient.

    Raises:
        ValueError: for another name.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def make_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then constant, cosine or linear decay to 0 over ``total_steps``.

    Raises:
        ValueError: for another kind.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if kind == "linear":
            return 1.0 - progress
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
