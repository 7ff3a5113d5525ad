"""Operations on jagged token tensors: flat ``tokens`` (N, D) plus ``offsets`` (B+1,).

Token-wise work (projections, feed-forward, norms) runs on the flat tokens and never sees
padding. Only attention needs a padded layout; :func:`length_buckets` groups rows of similar
length so each group is padded to its own longest row, and :class:`BucketLayout` moves tokens
between the flat and the per-bucket padded layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor


def row_ids(offsets: Tensor) -> Tensor:
    """``(N,)`` row index of every token."""
    lengths = offsets[1:] - offsets[:-1]  # (B,)
    return torch.repeat_interleave(torch.arange(lengths.numel(), device=offsets.device), lengths)


def positions(offsets: Tensor, from_end: bool = False) -> Tensor:
    """``(N,)`` position of every token inside its row (0 = first, or 0 = last if ``from_end``)."""
    lengths = offsets[1:] - offsets[:-1]  # (B,)
    starts = torch.repeat_interleave(offsets[:-1], lengths)  # (N,)
    pos = torch.arange(int(offsets[-1]), device=offsets.device) - starts  # (N,)
    if from_end:
        pos = torch.repeat_interleave(lengths, lengths) - 1 - pos
    return pos


def segment_sum(tokens: Tensor, offsets: Tensor) -> Tensor:
    """``(B, D)`` sum of each row's tokens; 0 for an empty row."""
    b = offsets.numel() - 1
    return tokens.new_zeros(b, tokens.shape[1]).index_add_(0, row_ids(offsets), tokens)  # (B, D)


def segment_mean(tokens: Tensor, offsets: Tensor) -> Tensor:
    """``(B, D)`` mean of each row's tokens; 0 for an empty row."""
    lengths = (offsets[1:] - offsets[:-1]).clamp(min=1).to(tokens.dtype)  # (B,)
    return segment_sum(tokens, offsets) / lengths.unsqueeze(1)


def segment_max(tokens: Tensor, offsets: Tensor) -> Tensor:
    """``(B, D)`` element-wise max of each row's tokens; 0 for an empty row."""
    b = offsets.numel() - 1
    out = tokens.new_zeros(b, tokens.shape[1])  # (B, D)
    index = row_ids(offsets).unsqueeze(1).expand_as(tokens)  # (N, D)
    return out.scatter_reduce(0, index, tokens, reduce="amax", include_self=False)


def segment_softmax(scores: Tensor, offsets: Tensor) -> Tensor:
    """``(N,)`` softmax of ``scores`` (N,) within each row."""
    b = offsets.numel() - 1
    rows = row_ids(offsets)  # (N,)
    row_max = scores.new_full((b,), float("-inf")).scatter_reduce(0, rows, scores, reduce="amax", include_self=True)
    weights = torch.exp(scores - row_max[rows])  # (N,)
    totals = scores.new_zeros(b).index_add_(0, rows, weights)  # (B,)
    return weights / totals[rows]


@dataclass
class BucketLayout:
    """Where each row's tokens go in the padded per-bucket layout.

    Attributes:
        token_index: per bucket, ``(b_k, L_k)`` int64 index into the flat tokens (0 where padded).
        valid: per bucket, ``(b_k, L_k)`` bool, True on real tokens.
        flat_slot: per bucket, ``(T_k,)`` positions in ``token_index.view(-1)`` of the real tokens.
        flat_token: per bucket, ``(T_k,)`` the flat token each real slot holds.
    """

    token_index: List[Tensor]
    valid: List[Tensor]
    flat_slot: List[Tensor]
    flat_token: List[Tensor]


MAX_SCORES = 1 << 22
"""Attention scores per head in one bucket (rows x L x L): bounds the memory of a batch's
attention (4M floats x heads) whatever its longest sequences, so a job's peak memory follows
``--batch-size``, not the worst batch it happens to meet."""


def length_buckets(
    lengths: Tensor, max_waste: float = 0.1, min_tokens: int = 1024, max_scores: int = MAX_SCORES
) -> List[Tensor]:
    """Group rows (with length > 0) into buckets of similar length.

    Rows are sorted by length; runs of equal length start as buckets, and a bucket is merged
    into the next (longer) one while the padding this adds stays under ``max_waste`` of the
    merged bucket's real tokens, or while the bucket is too small (< ``min_tokens`` real tokens)
    to be worth its own kernel call. A bucket whose ``rows x L x L`` attention scores exceed
    ``max_scores`` is then cut into row chunks that fit (one row at least). The grouping never
    changes a row's result, only speed and memory.

    Args:
        lengths: (B,) int64.
        max_waste: allowed padded fraction when merging.
        min_tokens: buckets smaller than this are merged regardless.
        max_scores: most attention scores (per head) of one bucket.

    Returns:
        list of (b_k,) row-index tensors, shortest rows first.
    """
    order = torch.argsort(lengths, stable=True)  # (B,)
    sorted_len = lengths[order]
    keep = sorted_len > 0
    order, sorted_len = order[keep], sorted_len[keep]
    if order.numel() == 0:
        return []
    values, counts = torch.unique_consecutive(sorted_len, return_counts=True)
    buckets: List[tuple] = []  # (start, stop, max_len, real_tokens)
    start = 0
    for value, count in zip(values.tolist(), counts.tolist()):
        real = value * count
        if buckets:
            b_start, _, _, b_real = buckets[-1]
            merged_real = b_real + real
            waste = value * (start + count - b_start) - merged_real
            if waste <= max_waste * merged_real or b_real < min_tokens:
                buckets[-1] = (b_start, start + count, value, merged_real)
                start += count
                continue
        buckets.append((start, start + count, value, real))
        start += count
    chunks = []
    for s, e, width, _ in buckets:
        step = max(1, max_scores // (width * width))  # rows whose scores fit
        chunks.extend(order[c : min(c + step, e)] for c in range(s, e, step))
    return chunks


def bucket_layout(offsets: Tensor, buckets: List[Tensor]) -> BucketLayout:
    """Index tensors to gather flat tokens into per-bucket padded blocks and back."""
    lengths = offsets[1:] - offsets[:-1]
    token_index, valid, flat_slot, flat_token = [], [], [], []
    for rows in buckets:
        row_len = lengths[rows]  # (b,)
        width = int(row_len.max())
        steps = torch.arange(width, device=offsets.device)  # (L,)
        mask = steps.unsqueeze(0) < row_len.unsqueeze(1)  # (b, L)
        index = (offsets[rows].unsqueeze(1) + steps.unsqueeze(0)) * mask  # (b, L)
        token_index.append(index)
        valid.append(mask)
        slot = torch.nonzero(mask.reshape(-1)).squeeze(1)  # (T,)
        flat_slot.append(slot)
        flat_token.append(index.reshape(-1)[slot])
    return BucketLayout(token_index, valid, flat_slot, flat_token)
