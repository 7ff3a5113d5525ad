"""The one loop from batches to model outputs, shared by every job that runs a trained model
(batch embedding, the MLflow pyfunc, ablation, benchmarks).

    for batch, out in iter_outputs(model, batches, ("fused",)):     # out["fused"]: (b, D) float32, CPU
        ...
    cached = collect_outputs(model, batches, ("vectors", "present"))  # (N, M, D), (N, M) over all batches

Outputs, by name:

| name      | shape     | what                                                          |
|-----------|-----------|---------------------------------------------------------------|
| fused     | (B, D)    | the row's embedding (``ModelOutput.fused``)                   |
| logits    | (B, K)    | the task head's output                                        |
| vectors   | (B, M, D) | per-modality vectors, modalities in sorted order (set fusion) |
| present   | (B, M)    | which modalities each row has                                 |

Asking for ``vectors`` or ``present`` runs ``model.encode`` and, only if ``fused`` or
``logits`` are asked too, ``model.fuse`` on the same vectors, so nothing is computed twice.
The model is run as it is: put it in eval mode first (``ModelSource.build`` does).
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from deepsets.batch import FeatureBatch

OUTPUTS = ("fused", "logits", "vectors", "present")


def _check(model: nn.Module, want: Sequence[str]) -> None:
    unknown = [w for w in want if w not in OUTPUTS]
    if unknown or not want:
        raise ValueError(f"unknown outputs {unknown}: choose some of {', '.join(OUTPUTS)}")
    if ("vectors" in want or "present" in want) and not hasattr(model, "encode"):
        raise ValueError(
            f"per-modality vectors need a set-fusion model; a {type(model).__name__} fuses tokens directly"
        )


@torch.inference_mode()
def outputs_of(
    model: nn.Module, batch: FeatureBatch, want: Sequence[str], device: Optional[torch.device | str] = None
) -> Dict[str, Tensor]:
    """The outputs named in ``want`` for one batch, float32 (``present`` bool) on the CPU.

    Args:
        model: a built model (``deepsets.builders.build_model``) or a two-tower model's tower.
        batch: the rows.
        want: names from :data:`OUTPUTS`.
        device: move the batch here first (the model must be there already); None = as it is.

    Raises:
        ValueError: for an unknown name, or vectors asked of a model without them.
    """
    _check(model, want)
    if device is not None:
        batch = batch.to(device)
    out: Dict[str, Tensor] = {}
    result = None
    if "vectors" in want or "present" in want:
        vectors, present = model.encode(batch)  # (B, M, D), (B, M)
        if "vectors" in want:
            out["vectors"] = vectors.float().cpu()
        if "present" in want:
            out["present"] = present.cpu()
        if "fused" in want or "logits" in want:
            result = model.fuse(vectors, present)
    else:
        result = model(batch)
    if "fused" in want:
        out["fused"] = result.fused.float().cpu()  # (B, D)
    if "logits" in want:
        out["logits"] = result.logits.float().cpu()  # (B, K)
    return out


def iter_outputs(
    model: nn.Module, batches: Iterable[FeatureBatch], want: Sequence[str], device: Optional[torch.device | str] = None
) -> Iterator[Tuple[FeatureBatch, Dict[str, Tensor]]]:
    """``(batch, outputs_of(model, batch, want, device))`` for every batch, in order."""
    _check(model, want)
    for batch in batches:
        yield batch, outputs_of(model, batch, want, device)


def collect_outputs(
    model: nn.Module, batches: Iterable[FeatureBatch], want: Sequence[str], device: Optional[torch.device | str] = None
) -> Dict[str, Tensor]:
    """The outputs of every batch, concatenated over rows (each ``(N, ...)``).

    Raises:
        ValueError: as :func:`outputs_of`, or when there is no batch at all.
    """
    parts: Dict[str, list] = {name: [] for name in want}
    for _, out in iter_outputs(model, batches, want, device):
        for name in want:
            parts[name].append(out[name])
    if not parts[want[0]]:
        raise ValueError("no batches to run the model on")
    return {name: torch.cat(values) for name, values in parts.items()}
