"""SetFusion around a fusion head: modality dropout, the empty-set embedding and input checks."""

import pytest
import torch

from deepsets.fusion import (
    FusionHead,
    FusionOutput,
    SetFusion,
)
from tests.deepsets.fusion_cases import OUT, D, M, fuse, make_head, random_inputs

# ---------------------------------------------------------------- SetFusion


def set_fusion(modality_dropout: float, kind: str = "deepset-max") -> SetFusion:
    head = make_head(kind)
    torch.manual_seed(1)
    return SetFusion(head, M, D, modality_dropout=modality_dropout)


def test_full_modality_dropout_gives_the_empty_embedding_everywhere():
    fusion = set_fusion(1.0).train()
    vectors, present = random_inputs(6, 5)
    out = fusion(vectors, present)
    assert torch.equal(out.fused, fusion.empty.detach().expand(6, OUT))
    assert (out.winners == -1).all()


def test_zero_modality_dropout_changes_nothing_and_eval_ignores_dropout():
    vectors, present = random_inputs(6, 6)
    plain = set_fusion(0.0)
    head_out = fuse(plain.head, vectors, present)
    nonempty = present.any(1)
    for fusion, mode in ((plain, "train"), (set_fusion(0.9), "eval")):
        fusion.train(mode == "train")
        with torch.no_grad():
            out = fusion(vectors, present)
        assert torch.equal(out.fused[nonempty], head_out.fused[nonempty]), mode
        assert torch.equal(out.winners[nonempty], head_out.winners[nonempty]), mode


def test_empty_rows_get_exactly_the_empty_parameter():
    fusion = set_fusion(0.0).eval()
    vectors, present = random_inputs(6, 7)
    vectors = vectors.masked_fill(~present.unsqueeze(-1), float("nan"))
    out = fusion(vectors, present)
    empty = ~present.any(1)
    assert empty.any() and (~empty).any()
    assert torch.equal(out.fused[empty], fusion.empty.detach().expand(int(empty.sum()), OUT))
    assert not torch.isclose(out.fused[~empty], fusion.empty.detach()).all(dim=1).any()
    (out.fused.sum()).backward()
    assert fusion.empty.grad.abs().sum() > 0


class _RecordPresent(FusionHead):
    """Spy head: remembers which modalities it was shown."""

    out_dim = 1

    def forward(self, vectors, present):
        self.seen = present.clone()
        return FusionOutput(fused=present.float().sum(1, keepdim=True))


def test_modality_dropout_rate_follows_the_global_seed_and_never_adds_modalities():
    spy = _RecordPresent()
    fusion = SetFusion(spy, M, D, modality_dropout=0.3).train()
    present = torch.rand(5000, M, generator=torch.Generator().manual_seed(0)) < 0.8  # (B, M)
    vectors = torch.zeros(5000, M, D)
    torch.manual_seed(11)
    fusion(vectors, present)
    first = spy.seen
    assert not (first & ~present).any()
    kept = first.sum() / present.sum()
    assert abs(kept.item() - 0.7) < 0.02
    torch.manual_seed(11)
    fusion(vectors, present)
    assert torch.equal(spy.seen, first)
    torch.manual_seed(12)
    fusion(vectors, present)
    assert not torch.equal(spy.seen, first)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_set_fusion_rejects_bad_dropout(bad):
    with pytest.raises(ValueError, match=f"modality_dropout must be in \\[0, 1\\], got {bad}"):
        SetFusion(make_head("attention"), M, D, modality_dropout=bad)


def test_inputs_are_checked():
    fusion = set_fusion(0.0)
    with pytest.raises(ValueError, match="expected 4 modality slots, got 3"):
        fusion(torch.zeros(2, 3, D), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="present must be a bool"):
        fusion(torch.zeros(2, M, D), torch.ones(2, M))
    with pytest.raises(ValueError, match="expected vectors of width 8, got 7"):
        fusion(torch.zeros(2, M, 7), torch.ones(2, M, dtype=torch.bool))
