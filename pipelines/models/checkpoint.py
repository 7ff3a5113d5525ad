"""Training checkpoints: plain tensors and JSON only, loadable with ``torch.load(weights_only=True)``.

A checkpoint directory holds::

    state.pt          {"model": state_dict, "optimizer": state_dict, "scheduler": state_dict,
                       "epoch": int, "step": int, "selection": {...}}
                                                        (tensors, numbers, dicts: no pickled code;
                                                        "selection" was "progress" in earlier versions)
    spec.json         the fitted FeatureSpec
    config.json       the validated run config, every URI's password redacted (a resumed run
                      takes its tracking URI from its own config, never from here)
    model_config.json the model's settings (``ModelArgs.to_dict()``)
    epoch.json        {"epoch": int, "step": int}: what ``train --resume`` reads to count the
                      epochs done without fetching state.pt (absent in older checkpoints)
"""

from __future__ import annotations

import io
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

import torch

from deepsets.features import storage
from deepsets.features.spec import FeatureSpec
from deepsets.model_args import ModelArgs
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.redaction import redact_secrets

FILES = ("state.pt", "spec.json", "config.json", "model_config.json")
EPOCH_FILE = "epoch.json"


@dataclass
class TrainState:
    """What a checkpoint restores."""

    model: Dict[str, Any]
    optimizer: Dict[str, Any]
    scheduler: Dict[str, Any]
    epoch: int
    step: int
    selection: Dict[str, Any] = field(default_factory=dict)
    """Epoch selection so far: ``best_epoch``, ``best_score`` and ``stale_epochs`` (see
    :class:`deepsets.pipelines.training.worker.BestEpoch`); empty in checkpoints written before it existed."""


def save_checkpoint(
    directory: str | Path, state: TrainState, spec: FeatureSpec, config: dict, model_args: ModelArgs
) -> None:
    """Write a checkpoint into ``directory`` (which must exist); ``config`` is the run config
    (``RunConfig.as_dict()``), written with the passwords of its URIs redacted."""
    directory = Path(directory)
    torch.save(
        {
            "model": state.model,
            "optimizer": state.optimizer,
            "scheduler": state.scheduler,
            "epoch": state.epoch,
            "step": state.step,
            "selection": state.selection,
        },
        directory / "state.pt",
    )
    spec.save(directory / "spec.json")
    (directory / "config.json").write_text(json.dumps(redact_secrets(config), indent=1, sort_keys=True))
    (directory / "model_config.json").write_text(json.dumps(model_args.to_dict(), indent=1, sort_keys=True))
    (directory / EPOCH_FILE).write_text(json.dumps({"epoch": state.epoch, "step": state.step}))


def load_checkpoint(directory: str | Path) -> tuple[TrainState, FeatureSpec, dict, ModelArgs]:
    """Read a checkpoint written by :func:`save_checkpoint` (no arbitrary pickle is executed),
    from a local directory or from object storage (``s3://bucket/.../checkpoint_000002``, read
    through :mod:`deepsets.features.storage`).

    Returns:
        ``(state, spec, run config dict, model args)``.

    Raises:
        JobError: naming the missing file, or the file that cannot be read.
        DataError: for a spec.json that is not a spec.
    """
    directory = os.fspath(directory).rstrip("/")
    for name in FILES:
        if not storage.exists(storage.join(directory, name)):
            raise JobError(f"{directory}: not a deepsets checkpoint (no {name})")
    try:
        weights = storage.join(directory, "state.pt")  # a local file is read by torch itself: no second copy in memory
        raw = torch.load(
            io.BytesIO(storage.read_bytes(weights)) if storage.is_uri(weights) else storage.local_path(weights),
            map_location="cpu",
            weights_only=True,
        )
        state = TrainState(
            raw["model"],
            raw["optimizer"],
            raw["scheduler"],
            int(raw["epoch"]),
            int(raw["step"]),
            dict(raw.get("selection", raw.get("progress")) or {}),  # its name in earlier checkpoints
        )
        config = json.loads(storage.read_text(storage.join(directory, "config.json")))
        model_args = ModelArgs.from_dict(json.loads(storage.read_text(storage.join(directory, "model_config.json"))))
    except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as err:  # torch.load, JSON, ModelArgs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise JobError(f"{directory}: cannot read the checkpoint ({type(err).__name__}: {first})") from None
    spec = FeatureSpec.load(storage.join(directory, "spec.json"))
    return state, spec, config, model_args
