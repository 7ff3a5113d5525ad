"""Saving small untrained models as checkpoints, for the job tests."""

from __future__ import annotations


def save_model(directory, spec, model_config: dict, seed: int, run_config: dict | None = None):
    """A seeded, untrained model saved as a training checkpoint directory; returns the model
    (eval mode). ``run_config`` is the checkpoint's ``config.json`` (label columns, ...)."""
    import torch

    from deepsets.builders import build_model
    from deepsets.model_args import ModelArgs
    from deepsets.pipelines.models.checkpoint import TrainState, save_checkpoint

    torch.manual_seed(seed)
    args = ModelArgs(**model_config)
    model = build_model(spec.model_inputs(), args).eval()
    save_checkpoint(directory, TrainState(model.state_dict(), {}, {}, 3, 42), spec, run_config or {}, args)
    return model
