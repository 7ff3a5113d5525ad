"""Pooling values of the DeepSet heads by hand and against a per-row reference, and parity with
torchmultimodal's DeepsetFusionModule."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchmultimodal.modules.fusions.deepset_fusion import DeepsetFusionModule

from deepsets.fusion import (
    DeepSetFusion,
    TorchMultimodalDeepset,
    masked_pool,
    mlp,
)
from tests.deepsets.fusion_cases import HIDDEN, NAMES, OUT, D, M, random_inputs

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
