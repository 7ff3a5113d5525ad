"""A new fusion head from this file alone: a gated sum of the present modality vectors,
registered with one line, then validated by the run config, built into a model and trained.

Nothing outside this file knows about ``gated_sum``; that is the point of the test.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import deepsets.fusion.registry as fusion_registry
import deepsets.fusion_heads as fusion_heads
from deepsets.builders import build_fusion, build_model
from deepsets.fusion import FusionHead, FusionOutput, FusionSettings, SetFusion, check_set_inputs, register_fusion
from deepsets.fusion_heads import FusionTraits, fusion_names, fusion_traits, set_fusion_heads
from deepsets.model_args import ModelArgs
from deepsets.optim import make_optimizer, make_scheduler
from deepsets.pipelines.training.loop import evaluate, train_step
from deepsets.pipelines.training.objectives import Objective
from tests.deepsets.random_batches import INFOS, random_batch


class GatedSumFusion(FusionHead):
    """sum_m sigmoid(g_m) x_m over the present modalities, then a linear map to ``dim``."""

    def __init__(self, num_modalities: int, dim: int) -> None:
        super().__init__()
        self.dim, self.out_dim = dim, dim
        self.gates = nn.Parameter(torch.zeros(num_modalities))  # (M,)
        self.project = nn.Linear(dim, dim)

    @classmethod
    def from_settings(cls, settings: FusionSettings) -> "GatedSumFusion":
        return cls(len(settings.names), settings.dim)

    def forward(self, vectors: Tensor, present: Tensor) -> FusionOutput:
        check_set_inputs(vectors, present, self.gates.numel(), self.dim)
        weights = torch.where(present, torch.sigmoid(self.gates), 0.0)  # (B, M)
        clean = torch.where(present.unsqueeze(-1), vectors, 0.0)  # (B, M, D)
        return FusionOutput(self.project((weights.unsqueeze(-1) * clean).sum(dim=1)))  # (B, D)


GATED_SUM = FusionTraits("gated_sum")
FLAT = [info for info in INFOS if info.kind in ("dense", "categorical", "numeric")]  # no summarizers: quick steps


@pytest.fixture
def gated_sum(monkeypatch):
    """The head registered for one test (the tables are restored after it)."""
    monkeypatch.setattr(fusion_heads, "_HEADS", fusion_heads._HEADS.copy())
    monkeypatch.setattr(fusion_registry, "_BUILDERS", fusion_registry._BUILDERS.copy())
    register_fusion(GATED_SUM, GatedSumFusion.from_settings)  # the one registration line
    return GATED_SUM


def signal_batch(rows: int, seed: int):
    """Random rows whose label is whether ``image`` is present: learnable from the mask alone."""
    batch = random_batch(rows, seed=seed, infos=FLAT, presence=0.5)
    batch.labels["y"] = batch["image"].present.float()
    return batch


def test_a_head_registered_here_is_a_choice_everywhere(gated_sum):
    assert fusion_names()[-1] == "gated_sum" and "gated_sum" in set_fusion_heads()
    assert fusion_traits("gated_sum") == gated_sum
    assert ModelArgs(fusion="gated_sum").fusion == "gated_sum"  # the run config validates against the table
    with pytest.raises(ValueError, match="'tmm_deepset', 'mmt' or 'gated_sum'"):
        ModelArgs(fusion="gated")
    fusion = build_fusion("gated_sum", ["a", "b", "c"], 8)
    assert isinstance(fusion, SetFusion) and isinstance(fusion.head, GatedSumFusion) and fusion.out_dim == 8
    register_fusion(GATED_SUM, GatedSumFusion.from_settings)  # the same traits again: no-op
    with pytest.raises(ValueError, match="already registered with other traits"):
        register_fusion(FusionTraits("gated_sum", attention=True), GatedSumFusion.from_settings)


def test_the_registered_head_trains_with_the_training_recipe(gated_sum):
    torch.manual_seed(0)
    model = build_model(FLAT, dim=16, heads=2, fusion="gated_sum")
    assert isinstance(model.fusion.head, GatedSumFusion)
    objective = Objective("binary", ("y",))
    optimizer = make_optimizer(model, "adamw", 3e-2, 0.0)
    scheduler = make_scheduler(optimizer, "constant", total_steps=40, warmup_steps=0)
    held_out = [signal_batch(256, seed=1000)]
    cpu = torch.device("cpu")
    before = evaluate(model, held_out, objective, cpu, None)
    gates = model.fusion.head.gates.detach().clone()
    for step in range(40):
        train_step(model, signal_batch(64, seed=step), objective, optimizer, scheduler, cpu, None, grad_clip=1.0)
    after = evaluate(model, held_out, objective, cpu, None)
    assert not torch.equal(model.fusion.head.gates.detach(), gates)  # the head's own parameters learn
    assert after["loss"] < 0.8 * before["loss"]
    assert after["auc"] > 0.9  # whether image is present decides the label


def test_an_unknown_head_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown fusion head 'gated_sum' \\(known heads: deepset, attention"):
        fusion_traits("gated_sum")
    with pytest.raises(ValueError, match="choose one of deepset, attention, transformer, concat, tmm_deepset$"):
        build_fusion("mmt", ["a"], 8)  # a whole-model baseline is no set head
    with pytest.raises(ValueError, match="only set heads"):
        register_fusion(FusionTraits("whole", set_head=False), GatedSumFusion.from_settings)
    with pytest.raises(ValueError, match="poolings must be some of"):
        FusionTraits("bad", poolings=("mode",))
