"""Jagged token operations and bucketed attention against plain per-row references."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.jagged import (
    bucket_layout,
    length_buckets,
    positions,
    row_ids,
    segment_max,
    segment_mean,
    segment_softmax,
    segment_sum,
)
from deepsets.summarize import JaggedSelfAttention

lengths_lists = st.lists(st.integers(0, 12), min_size=1, max_size=16)


def offsets_of(lengths) -> torch.Tensor:
    out = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    out[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0)
    return out


def rows_of(tokens: torch.Tensor, offsets: torch.Tensor):
    return [tokens[int(offsets[i]) : int(offsets[i + 1])] for i in range(offsets.numel() - 1)]


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_lists)
def test_row_ids_and_positions(lengths):
    offsets = offsets_of(lengths)
    assert row_ids(offsets).tolist() == [i for i, n in enumerate(lengths) for _ in range(n)]
    assert positions(offsets).tolist() == [p for n in lengths for p in range(n)]
    assert positions(offsets, from_end=True).tolist() == [n - 1 - p for n in lengths for p in range(n)]


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_lists, seed=st.integers(0, 1000))
def test_segment_reductions_match_each_row(lengths, seed):
    offsets = offsets_of(lengths)
    tokens = torch.randn(sum(lengths), 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    scores = tokens[:, 0]
    softmax = segment_softmax(scores, offsets)
    for i, row in enumerate(rows_of(tokens, offsets)):
        empty = row.shape[0] == 0
        torch.testing.assert_close(
            segment_sum(tokens, offsets)[i], row.sum(0) if not empty else torch.zeros(3, dtype=torch.float64)
        )
        torch.testing.assert_close(
            segment_mean(tokens, offsets)[i], row.mean(0) if not empty else torch.zeros(3, dtype=torch.float64)
        )
        torch.testing.assert_close(
            segment_max(tokens, offsets)[i], row.amax(0) if not empty else torch.zeros(3, dtype=torch.float64)
        )
        if not empty:
            torch.testing.assert_close(softmax[int(offsets[i]) : int(offsets[i + 1])], torch.softmax(row[:, 0], 0))


@settings(max_examples=80, deadline=None)
@given(
    lengths=lengths_lists, max_waste=st.floats(0.0, 2.0), min_tokens=st.integers(1, 64), max_scores=st.integers(1, 400)
)
def test_buckets_hold_every_non_empty_row_once_and_the_layout_gathers_its_tokens(
    lengths, max_waste, min_tokens, max_scores
):
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    buckets = length_buckets(lengths_t, max_waste=max_waste, min_tokens=min_tokens, max_scores=max_scores)
    # a bucket's attention scores (rows x L x L) stay within max_scores, unless one row alone exceeds it
    assert all(len(b) == 1 or len(b) * int(lengths_t[b].max()) ** 2 <= max_scores for b in buckets)
    rows = torch.cat(buckets).tolist() if buckets else []
    assert sorted(rows) == [i for i, n in enumerate(lengths) if n > 0]
    longest = [int(lengths_t[b].max()) for b in buckets]
    assert longest == sorted(longest)  # shortest rows first
    offsets = offsets_of(lengths)
    layout = bucket_layout(offsets, buckets)
    for rows_k, index, valid, slot, token in zip(
        buckets, layout.token_index, layout.valid, layout.flat_slot, layout.flat_token
    ):
        for r, row in enumerate(rows_k.tolist()):
            n = lengths[row]
            assert valid[r].tolist() == [True] * n + [False] * (index.shape[1] - n)
            assert index[r, :n].tolist() == list(range(int(offsets[row]), int(offsets[row]) + n))
        assert torch.equal(index.reshape(-1)[slot], token)
    assert sorted(torch.cat(layout.flat_token).tolist() if buckets else []) == list(range(sum(lengths)))


def reference_attention(module: JaggedSelfAttention, row: torch.Tensor) -> torch.Tensor:
    """Textbook multi-head self-attention over one row (L, D), no padding anywhere."""
    length, dim = row.shape
    heads = module.heads
    q, k, v = module.qkv(row).split(dim, dim=1)  # (L, D) each
    q, k, v = (t.view(length, heads, dim // heads).transpose(0, 1) for t in (q, k, v))  # (H, L, Dh)
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dim // heads), dim=-1)  # (H, L, L)
    mixed = (weights @ v).transpose(0, 1).reshape(length, dim)  # (L, D)
    return module.out(mixed)


@settings(max_examples=50, deadline=None)
@given(lengths=lengths_lists, seed=st.integers(0, 1000), max_waste=st.sampled_from([0.0, 0.1, 10.0]))
def test_bucketed_attention_equals_attention_over_each_row_alone(lengths, seed, max_waste):
    torch.manual_seed(seed)
    module = JaggedSelfAttention(dim=8, heads=2).double().eval()
    offsets = offsets_of(lengths)
    tokens = torch.randn(sum(lengths), 8, dtype=torch.float64)
    layout = bucket_layout(offsets, length_buckets(offsets[1:] - offsets[:-1], max_waste=max_waste, min_tokens=1))
    with torch.no_grad():
        out = module(tokens, layout)  # (N, D)
        for i, row in enumerate(rows_of(tokens, offsets)):
            if row.shape[0]:
                torch.testing.assert_close(out[int(offsets[i]) : int(offsets[i + 1])], reference_attention(module, row))


def test_attention_of_no_tokens_is_empty_and_keeps_the_projection_in_the_graph():
    module = JaggedSelfAttention(dim=4, heads=2)
    offsets = torch.zeros(3, dtype=torch.int64)  # three empty rows
    out = module(torch.zeros(0, 4), bucket_layout(offsets, length_buckets(offsets[1:] - offsets[:-1])))
    assert out.shape == (0, 4)
    out.sum().backward()
    assert module.qkv.weight.grad is not None


def test_sdpa_mask_semantics_used_by_the_attention():
    """A bool attn_mask True means 'may attend' (the bucketed attention relies on it)."""
    q = k = v = torch.randn(1, 1, 3, 2)
    mask = torch.tensor([True, True, False]).view(1, 1, 1, 3)
    masked = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    alone = F.scaled_dot_product_attention(q, k[..., :2, :], v[..., :2, :])
    torch.testing.assert_close(masked, alone)
