"""Training checkpoints: plain tensors and JSON only, loadable with ``torch.load(weights_only=True)``.

A checkpoint directory holds::

    state.pt          {"model": state_dict, "optimizer": state_dict, "scheduler": state_dict,
                       "epoch": int, "step": int}        (tensors, numbers, dicts: no pickled code)
    spec.json         the fitted FeatureSpec
    config.json       the validated run config
    model_config.json the model's settings (``ModelArgs.to_dict()``)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import torch

from deepsets.model_args import ModelArgs
from features.spec import FeatureSpec
from pipelines.errors import JobError

FILES = ("state.pt", "spec.json", "config.json", "model_config.json")


@dataclass
class TrainState:
    """What a checkpoint restores."""

    model: Dict[str, Any]
    optimizer: Dict[str, Any]
    scheduler: Dict[str, Any]
    epoch: int
    step: int


def save_checkpoint(directory: str | Path, state: TrainState, spec: FeatureSpec, config: dict, model_args: ModelArgs) -> None:
    """Write a checkpoint into ``directory`` (which must exist); ``config`` is the run config
    (``RunConfig.as_dict()``)."""
    directory = Path(directory)
    torch.save(
        {"model": state.model, "optimizer": state.optimizer, "scheduler": state.scheduler, "epoch": state.epoch, "step": state.step},
        directory / "state.pt",
    )
    spec.save(directory / "spec.json")
    (directory / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    (directory / "model_config.json").write_text(json.dumps(model_args.to_dict(), indent=1, sort_keys=True))


def load_checkpoint(directory: str | Path) -> tuple[TrainState, FeatureSpec, dict, ModelArgs]:
    """Read a checkpoint written by :func:`save_checkpoint` (no arbitrary pickle is executed).

    Returns:
        ``(state, spec, run config dict, model args)``.

    Raises:
        JobError: naming the missing file.
    """
    directory = Path(directory)
    for name in FILES:
        if not (directory / name).exists():
            raise JobError(f"{directory}: not a deepsets checkpoint (no {name})")
    raw = torch.load(directory / "state.pt", map_location="cpu", weights_only=True)
    state = TrainState(raw["model"], raw["optimizer"], raw["scheduler"], int(raw["epoch"]), int(raw["step"]))
    spec = FeatureSpec.load(directory / "spec.json")
    config = json.loads((directory / "config.json").read_text())
    model_args = ModelArgs.from_dict(json.loads((directory / "model_config.json").read_text()))
    return state, spec, config, model_args
