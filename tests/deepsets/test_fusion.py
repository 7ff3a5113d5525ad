"""Fusion heads over the set of modality vectors: the invariants every head keeps, the builders and
the mlp helper (pooling values: test_fusion_pooling.py; SetFusion: test_set_fusion.py)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from deepsets.builders import build_fusion
from deepsets.fusion import (
    SetFusion,
    mlp,
    module_out_dim,
)
from deepsets.fusion_heads import set_fusion_heads
from tests.deepsets.fusion_cases import (
    ALL_KINDS,
    NAMES,
    SET_KINDS,
    ZERO_FILL_KINDS,
    D,
    M,
    fuse,
    make_head,
    random_inputs,
    relabelled,
)

# ---------------------------------------------------------------- invariants, every head


@pytest.mark.parametrize("kind", ALL_KINDS)
@settings(max_examples=8, deadline=None)
@given(perm=st.permutations(range(M)), seed=st.integers(0, 2**16))
def test_modality_order_does_not_matter(kind, perm, seed):
    head = make_head(kind)
    vectors, present = random_inputs(6, seed)
    expected = fuse(head, vectors, present)
    got = fuse(relabelled(head, perm), vectors[:, perm], present[:, perm])
    torch.testing.assert_close(got.fused, expected.fused, atol=1e-5, rtol=1e-5)
    if expected.winners is not None:
        # winners name slots, so they are relabelled too: new slot j is old slot perm[j]
        back = torch.tensor(perm + [-1])[got.winners]  # -1 indexes the appended -1
        assert torch.equal(back, expected.winners)


@pytest.mark.parametrize("kind", ["transformer", "concat"])
def test_slot_tied_heads_do_see_the_order_without_relabelling(kind):
    # The counterpart of the test above: for these two heads the slot IS the modality's identity.
    head = make_head(kind)
    vectors, present = random_inputs(6, 1)
    present[:] = True
    perm = [1, 0, 3, 2]
    moved = fuse(head, vectors[:, perm], present[:, perm]).fused
    assert (moved - fuse(head, vectors, present).fused).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ALL_KINDS)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_missing_slot_contents_have_no_influence(kind, seed):
    head = make_head(kind)
    vectors, present = random_inputs(7, seed)
    missing = ~present.unsqueeze(-1).expand_as(vectors)  # (B, M, D)
    garbage = vectors.masked_fill(missing, 0.0) + torch.randn_like(vectors) * 1e6 * missing
    nans = vectors.masked_fill(missing, float("nan"))
    base = fuse(head, vectors, present)
    for other in (garbage, nans):
        out = fuse(head, other, present)
        torch.testing.assert_close(out.fused, base.fused, atol=1e-6, rtol=0)
        if base.winners is not None:
            assert torch.equal(out.winners, base.winners)


def _row_with_a_zero_slot(present_zero: bool) -> tuple[torch.Tensor, torch.Tensor]:
    # Slots 0, 1 hold vectors negative in the first half of the dims and positive in the second,
    # so a zero vector would win max in the first half, min in the second and move the median.
    sign = torch.tensor([-1.0] * (D // 2) + [1.0] * (D // 2))
    vectors = torch.zeros(1, M, D)
    vectors[0, 0] = sign * torch.linspace(1, 2, D)
    vectors[0, 1] = sign * torch.linspace(3, 0.5, D)
    present = torch.tensor([[True, True, present_zero, False]])
    return vectors, present


@pytest.mark.parametrize("kind", [k for k in SET_KINDS if k != "deepset-sum"])
def test_missing_is_not_a_zero_vector(kind):
    head = make_head(kind)
    absent = fuse(head, *_row_with_a_zero_slot(False)).fused
    zero = fuse(head, *_row_with_a_zero_slot(True)).fused
    assert (absent - zero).abs().max() > 1e-3


def test_sum_pooling_cannot_tell_a_zero_from_a_missing_modality():
    # Documented limit of sum pooling: adding a zero element does not change a sum.
    head = make_head("deepset-sum")
    torch.testing.assert_close(
        fuse(head, *_row_with_a_zero_slot(False)).fused, fuse(head, *_row_with_a_zero_slot(True)).fused
    )


@pytest.mark.parametrize("kind", ZERO_FILL_KINDS)
def test_zero_fill_baselines_treat_missing_as_zero(kind):
    # ConcatFusion and the torchmultimodal adapter break invariant 3 on purpose: documented here.
    head = make_head(kind)
    torch.testing.assert_close(
        fuse(head, *_row_with_a_zero_slot(False)).fused, fuse(head, *_row_with_a_zero_slot(True)).fused
    )


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_rows_with_nothing_present_are_finite(kind):
    head = make_head(kind)
    vectors = torch.full((3, M, D), float("nan"))
    out = fuse(head, vectors, torch.zeros(3, M, dtype=torch.bool))
    assert out.fused.shape == (3, head.out_dim)
    assert torch.isfinite(out.fused).all()
    if out.winners is not None:
        assert (out.winners == -1).all()


@pytest.mark.parametrize("kind", ALL_KINDS)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), position=st.integers(0, 8))
def test_a_row_does_not_depend_on_its_batch(kind, seed, position):
    head = make_head(kind)
    others, others_present = random_inputs(9, seed)
    row, row_present = random_inputs(2, seed + 1)
    alone = fuse(head, row[:1], row_present[:1])
    others[position], others_present[position] = row[0], row_present[0]
    batched = fuse(head, others, others_present)
    torch.testing.assert_close(batched.fused[position], alone.fused[0], atol=1e-5, rtol=1e-5)
    if alone.winners is not None:
        assert torch.equal(batched.winners[position], alone.winners[0])


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_gradients_reach_every_parameter_and_stay_finite_with_nan_slots(kind):
    head = make_head(kind).train()
    vectors, present = random_inputs(8, 3)
    vectors = vectors.masked_fill(~present.unsqueeze(-1), float("nan"))
    fused = head(vectors, present).fused  # (B, OUT)
    # A random projection, not a plain sum: the sum of a LayerNorm output has zero gradient.
    (fused * torch.randn(fused.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    for name, param in head.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_same_seed_same_weights_and_outputs(kind):
    vectors, present = random_inputs(5, 4)
    a, b, c = make_head(kind, seed=0), make_head(kind, seed=0), make_head(kind, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # the seed does matter
    assert torch.equal(fuse(a, vectors, present).fused, fuse(b, vectors, present).fused)


# ---------------------------------------------------------------- builders


@pytest.mark.parametrize("kind", set_fusion_heads())
def test_build_fusion_every_kind(kind):
    fusion = build_fusion(kind, NAMES, 16, heads=4, pooling="max", hidden_dims=[32], modality_dropout=0.1)
    assert isinstance(fusion, SetFusion)
    assert fusion.out_dim == fusion.head.out_dim == 16
    assert fusion.modality_dropout == 0.1
    vectors, present = torch.randn(3, M, 16), torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]]).bool()
    out = fuse(fusion, vectors, present)
    assert out.fused.shape == (3, 16) and torch.isfinite(out.fused).all()


def test_build_fusion_defaults():
    transformer = build_fusion("transformer", NAMES, 16).head
    assert transformer.encoder.layers[0].linear1.out_features == 64  # ff_dim None -> 4 * dim
    assert len(transformer.encoder.layers) == 2
    deepset = build_fusion("deepset", NAMES, 16).head
    assert deepset.pooling == "mean"
    assert [m.out_features for m in deepset.mlp if isinstance(m, nn.Linear)] == [16, 16]  # hidden (dim,)


def test_build_fusion_reports_every_problem():
    with pytest.raises(ValueError) as error:
        build_fusion("mlp", ["b", "a"], 8)
    text = str(error.value)
    assert "unknown fusion kind 'mlp'; choose one of deepset, attention, transformer, concat, tmm_deepset" in text
    assert "names must be non-empty, unique and sorted, got ['b', 'a']" in text
    with pytest.raises(ValueError, match=r"fusion 'tmm_deepset' supports sum, mean, max \(found 'median'\)"):
        build_fusion("tmm_deepset", NAMES, 8, pooling="median")


# ---------------------------------------------------------------- mlp helper


def test_mlp_structure_and_checks():
    net = mlp(6, [10, 4], 3, dropout=0.25, activation=nn.GELU)
    assert [type(m) for m in net] == [nn.Linear, nn.GELU, nn.Dropout] * 2 + [nn.Linear]
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [(6, 10), (10, 4), (4, 3)]
    assert net[2].p == 0.25
    assert module_out_dim(net, 6) == 3 and module_out_dim(nn.Identity(), 6) == 6
    assert [type(m) for m in mlp(6, [], 3)] == [nn.Linear]
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\), got 1.0"):
        mlp(6, [4], 3, dropout=1.0)
    with pytest.raises(ValueError, match="positive integers"):
        mlp(6, [0], 3)
    with pytest.raises(ValueError, match="cannot read the output width of Conv1d"):
        module_out_dim(nn.Conv1d(3, 3, 1), 3)
