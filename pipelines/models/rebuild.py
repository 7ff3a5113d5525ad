"""A trained torch model rebuilt from its parts, with torch and deepsets alone (no MLflow):
what every process that runs a model needs, embed actors included.

    model = rebuild_model(spec, args, state_dict)          # eval mode, weights checked strictly
    side, side_spec = tower_view(model, spec, "query")     # a two-tower model's side
    model, spec, args = load_model_files(paths)            # from a logged model's artifacts

A model logged by :func:`deepsets.pipelines.models.pyfunc.log_deepsets_model` keeps its parts as
three plain artifacts, named by :data:`FILES`: ``weights.pt`` (the ``state_dict``), ``spec.json``
(the fitted :class:`~deepsets.features.spec.FeatureSpec`) and ``model_config.json`` (the
:class:`~deepsets.model_args.ModelArgs`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from deepsets.builders import build_model
from deepsets.features.spec import FeatureSpec
from deepsets.model_args import ModelArgs
from deepsets.two_tower import TwoTowerModel

WEIGHTS, SPEC, MODEL_CONFIG = "weights", "spec", "model_config"
FILES = {WEIGHTS: "weights.pt", SPEC: "spec.json", MODEL_CONFIG: "model_config.json"}
"""A logged model's artifacts: artifact name -> file name."""


def rebuild_model(
    spec: FeatureSpec, args: ModelArgs, state_dict: Optional[Dict[str, torch.Tensor]] = None
) -> nn.Module:
    """``build_model(spec.model_inputs(), args)``, with ``state_dict`` loaded strictly, in eval mode.

    Raises:
        ValueError: when ``args`` does not build a model with exactly these parameters and
            buffers (naming the missing, unexpected or reshaped entries).
    """
    model = build_model(spec.model_inputs(), args)
    if state_dict is not None:
        check_shapes(model.state_dict(), state_dict)
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


def check_shapes(built: Dict[str, torch.Tensor], weights: Dict[str, torch.Tensor]) -> None:
    """``weights`` must have exactly the entries and shapes of the ``built`` model's state dict.

    Raises:
        ValueError: naming the missing, unexpected or reshaped entries (first 5 of each).
    """
    missing, extra = sorted(set(built) - set(weights)), sorted(set(weights) - set(built))
    reshaped = [
        f"{k}: {tuple(weights[k].shape)} vs {tuple(built[k].shape)}"
        for k in sorted(set(weights) & set(built))
        if weights[k].shape != built[k].shape
    ]
    if missing or extra or reshaped:
        raise ValueError(
            "the model settings do not rebuild these weights: "
            f"missing {missing[:5]}, unexpected {extra[:5]}, reshaped {reshaped[:5]} (first 5 of each)"
        )


def tower_view(model: nn.Module, spec: FeatureSpec, tower: Optional[str]) -> Tuple[nn.Module, FeatureSpec]:
    """The model to run and the spec to read with: a two-tower model's ``tower`` ("query" or
    "item") and the spec of its modalities only (the other side's columns need not exist), or a
    one-tower model and its spec as they are.

    Raises:
        ValueError: a two-tower model without a tower, or a tower for a one-tower model.
    """
    if isinstance(model, TwoTowerModel):
        if not tower:
            raise ValueError(
                "this is a two-tower model: choose the tower to run, query "
                f"({', '.join(model.query.names)}) or item ({', '.join(model.item.names)})"
            )
        side = model.tower(tower)
        return side, spec.subset(side.names)
    if tower:
        raise ValueError(f"tower '{tower}' asked for, but this model has a single tower (it is not a two_tower model)")
    return model, spec


def load_model_files(paths: Dict[str, Path]) -> Tuple[nn.Module, FeatureSpec, ModelArgs]:
    """The model a logged model's artifacts hold, rebuilt on the CPU in eval mode.

    Args:
        paths: artifact name (a key of :data:`FILES`) -> its local file.

    Returns:
        ``(model, spec, args)``.

    Raises:
        ValueError: when the settings do not rebuild the weights.
    """
    spec = FeatureSpec.load(paths[SPEC])
    args = ModelArgs.from_dict(json.loads(paths[MODEL_CONFIG].read_text(encoding="utf-8")))
    state_dict = torch.load(paths[WEIGHTS], map_location="cpu", weights_only=True)
    return rebuild_model(spec, args, state_dict), spec, args
