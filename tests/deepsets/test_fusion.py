"""Fusion heads over the set of modality vectors: invariants, hand-computed pools, torchmultimodal parity."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchmultimodal.modules.fusions.deepset_fusion import DeepsetFusionModule

from deepsets.builders import build_fusion
from deepsets.choices import SET_FUSION_HEADS
from deepsets.fusion import (
    AttentionPoolFusion,
    ConcatFusion,
    DeepSetFusion,
    FusionHead,
    FusionOutput,
    SetFusion,
    TorchMultimodalDeepset,
    TransformerFusion,
    masked_pool,
    mlp,
    module_out_dim,
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
    torch.testing.assert_close(fuse(head, *_row_with_a_zero_slot(False)).fused, fuse(head, *_row_with_a_zero_slot(True)).fused)


@pytest.mark.parametrize("kind", ZERO_FILL_KINDS)
def test_zero_fill_baselines_treat_missing_as_zero(kind):
    # ConcatFusion and the torchmultimodal adapter break invariant 3 on purpose: documented here.
    head = make_head(kind)
    torch.testing.assert_close(fuse(head, *_row_with_a_zero_slot(False)).fused, fuse(head, *_row_with_a_zero_slot(True)).fused)


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


# ---------------------------------------------------------------- pooling values


def test_max_winners_hand_built():
    head = DeepSetFusion(4, "max", nn.Identity())
    vectors = torch.tensor(
        [
            [[1.0, 5.0, 0.0, -1.0], [3.0, 2.0, -2.0, -3.0], [100.0, 100.0, 100.0, 100.0]],
            [[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [-7.0, 9.0, -7.0, 9.0]],
            [[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0]],
        ]
    )  # (3, 3, 4)
    present = torch.tensor([[True, True, False], [False, False, True], [False, False, False]])
    out = head(vectors, present)
    # row 0: the missing slot 2 holds 100s and must not win
    assert out.fused[0].tolist() == [3.0, 5.0, 0.0, -1.0]
    assert out.winners[0].tolist() == [1, 0, 0, 0]
    assert out.fused[1].tolist() == [-7.0, 9.0, -7.0, 9.0]
    assert out.winners[1].tolist() == [2, 2, 2, 2]
    assert out.fused[2].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert out.winners[2].tolist() == [-1, -1, -1, -1]
    assert out.winners.dtype == torch.int64


def test_pooling_values_hand_computed():
    nan = float("nan")
    vectors = torch.tensor(
        [
            [[1.0, 4.0], [3.0, -2.0], [2.0, 0.0], [nan, nan]],  # 3 present
            [[1.0, 4.0], [3.0, -2.0], [nan, 50.0], [-9.0, 9.0]],  # 2 present, even count
        ]
    )  # (2, 4, 2)
    present = torch.tensor([[True, True, True, False], [True, True, False, False]])
    expected = {
        "sum": [[6.0, 2.0], [4.0, 2.0]],
        "mean": [[2.0, 2.0 / 3.0], [2.0, 1.0]],
        "max": [[3.0, 4.0], [3.0, 4.0]],
        "min": [[1.0, -2.0], [1.0, -2.0]],
        "median": [[2.0, 0.0], [1.0, -2.0]],  # lower median for an even count
    }
    for pooling, values in expected.items():
        pooled, _ = masked_pool(vectors, present, pooling)
        torch.testing.assert_close(pooled, torch.tensor(values), msg=pooling)


@pytest.mark.parametrize("pooling", ["sum", "mean", "max", "min", "median"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_pooling_matches_a_per_row_reference(pooling, seed):
    vectors, present = random_inputs(6, seed)
    pooled, winners = masked_pool(vectors, present, pooling)
    for b in range(vectors.shape[0]):
        chosen = vectors[b, present[b]]  # (P, D)
        if chosen.shape[0] == 0:
            assert torch.equal(pooled[b], torch.zeros(D))
            continue
        reference = {
            "sum": lambda x: x.sum(0),
            "mean": lambda x: x.mean(0),
            "max": lambda x: x.max(0).values,
            "min": lambda x: x.min(0).values,
            "median": lambda x: x.median(0).values,
        }[pooling](chosen)
        torch.testing.assert_close(pooled[b], reference)
        if pooling == "max":
            slots = present[b].nonzero().squeeze(1)  # (P,)
            assert torch.equal(slots[chosen.argmax(0)], winners[b])


def test_unknown_pooling_is_rejected():
    with pytest.raises(ValueError, match="pooling must be one of .*'mode'"):
        DeepSetFusion(D, "mode", nn.Identity())


# ---------------------------------------------------------------- torchmultimodal parity


@pytest.mark.parametrize("pooling, function", [("sum", torch.sum), ("mean", torch.mean), ("max", torch.max)])
def test_deepset_equals_torchmultimodal_when_everything_is_present(pooling, function):
    torch.manual_seed(0)
    shared = mlp(D, [HIDDEN], OUT)
    ours = DeepSetFusion(D, pooling, copy.deepcopy(shared))
    theirs = DeepsetFusionModule({name: D for name in reversed(NAMES)}, copy.deepcopy(shared), function)
    vectors = torch.randn(6, M, D) * 3  # (B, M, D)
    # Insertion order reversed on purpose: torchmultimodal stacks in sorted() key order.
    embeddings = {name: vectors[:, m] for m, name in reversed(list(enumerate(NAMES)))}
    expected = theirs(embeddings)
    # torchmultimodal always L2-normalizes each modality vector before pooling; ours does not,
    # so the same inputs normalized are fed to ours.
    got = ours(F.normalize(vectors, p=2, dim=2), torch.ones(6, M, dtype=torch.bool)).fused
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # ...and without that normalization they differ (the quirk is real).
    assert (ours(vectors, torch.ones(6, M, dtype=torch.bool)).fused - expected).abs().max() > 1e-3
    # The adapter is a faithful wrapper of the same module.
    adapter = TorchMultimodalDeepset(NAMES, D, pooling, copy.deepcopy(shared))
    torch.testing.assert_close(adapter(vectors, torch.ones(6, M, dtype=torch.bool)).fused, expected, atol=1e-6, rtol=0)


def test_tmm_adapter_rejects_unsorted_names_and_unsupported_pooling():
    with pytest.raises(ValueError, match="sorted"):
        TorchMultimodalDeepset(["b", "a"], D, "sum", nn.Identity())
    with pytest.raises(ValueError, match="'median'"):
        TorchMultimodalDeepset(NAMES, D, "median", nn.Identity())


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


# ---------------------------------------------------------------- builders


@pytest.mark.parametrize("kind", SET_FUSION_HEADS)
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
    with pytest.raises(ValueError, match="pooling for 'tmm_deepset' must be one of"):
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
