"""The fusion heads the fusion tests run, built small, and their random inputs: every head kind,
the set heads and the zero-fill baselines, with the helpers that build and call them."""

import copy

import torch
from torch import nn

from deepsets.fusion import (
    AttentionPoolFusion,
    ConcatFusion,
    DeepSetFusion,
    FusionHead,
    FusionOutput,
    TorchMultimodalDeepset,
    TransformerFusion,
    mlp,
)

NAMES = ["audio", "image", "tags", "title"]
M, D, HIDDEN, OUT = len(NAMES), 8, 16, 5

DEEPSET_KINDS = [f"deepset-{p}" for p in ("sum", "mean", "max", "min", "median")]
TMM_KINDS = [f"tmm-{p}" for p in ("sum", "mean", "max")]
# Heads for which a missing modality is absent from the set (invariant 3).
SET_KINDS = DEEPSET_KINDS + ["attention", "transformer"]
# Baselines that turn a missing modality into a zero vector (they break invariant 3 on purpose).
ZERO_FILL_KINDS = ["concat"] + TMM_KINDS
ALL_KINDS = SET_KINDS + ZERO_FILL_KINDS


def make_head(kind: str, seed: int = 0) -> FusionHead:
    torch.manual_seed(seed)
    family, _, pooling = kind.partition("-")
    if family == "deepset":
        return DeepSetFusion(D, pooling, mlp(D, [HIDDEN], OUT))
    if family == "attention":
        return AttentionPoolFusion(D, mlp(D, [HIDDEN], OUT))
    if family == "transformer":
        return TransformerFusion(D, M, layers=2, heads=2, ff_dim=16)
    if family == "concat":
        return ConcatFusion(D, M, mlp(M * D, [HIDDEN], OUT))
    return TorchMultimodalDeepset(NAMES, D, pooling, mlp(D, [HIDDEN], OUT))


def random_inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(batch, M, D, generator=g)  # (B, M, D)
    present = torch.rand(batch, M, generator=g) < 0.6  # (B, M)
    present[0] = True  # at least one full row
    present[-1] = False  # and one empty row
    return vectors, present


def fuse(head: nn.Module, vectors: torch.Tensor, present: torch.Tensor) -> FusionOutput:
    head.eval()
    with torch.no_grad():
        return head(vectors, present)


def relabelled(head: FusionHead, perm: list[int]) -> FusionHead:
    """A copy of `head` whose slot-tied parameters follow the slots when inputs are permuted.

    New slot j holds old slot perm[j]. Set heads have no slot-tied parameters. The transformer's
    type embedding is the modality's identity and travels with it; for concat, the first Linear's
    column block of a modality travels with it. That is what "modality order does not matter" can
    honestly mean for those two: the slot order is a labelling, not information.
    """
    head = copy.deepcopy(head)
    with torch.no_grad():
        if isinstance(head, TransformerFusion):
            head.type_embedding.copy_(head.type_embedding[perm])
        if isinstance(head, ConcatFusion):
            first = head.mlp[0]
            blocks = first.weight.view(first.out_features, M, D)  # (H, M, D)
            first.weight.copy_(blocks[:, perm].reshape(first.out_features, M * D))
    return head
