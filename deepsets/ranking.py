"""Ranking losses and metrics over query groups of variable size, and the in-batch sampled
softmax of two-tower retrieval.

Groups arrive as a ``group`` id per row (e.g. ``query_id``); rows of a group need not be
adjacent. :func:`pad_groups` turns per-row scores into a padded ``(G, L)`` matrix with a mask, so
every loss and metric below handles groups of any size at once, padded slots masked out.

    scores, labels, mask = pad_groups(logits[:, 0], clicked, query_id)   # (G, L) each
    loss = listwise_softmax_loss(scores, labels, mask)
    ndcg = ndcg_at_k(scores, labels, mask, k=10)                         # (G,)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pad_groups(scores: Tensor, labels: Tensor, group: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row values -> padded per-group matrices.

    Args:
        scores: (N,) float.
        labels: (N,) relevance (0/1 or graded).
        group: (N,) int64 group id of each row.

    Returns:
        ``(scores, labels, mask)``, each ``(G, L)``: G distinct groups in ascending id order, L
        the largest group; rows keep their input order within a group; ``mask`` is False on
        padding (where scores and labels are 0).
    """
    ids, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)  # (G,), (N,), (G,)
    order = torch.argsort(inverse, stable=True)  # rows sorted by group, input order kept inside
    starts = torch.cumsum(counts, 0) - counts  # (G,)
    slot = torch.arange(group.numel(), device=group.device) - starts[inverse[order]]  # (N,) position within its group
    shape = (ids.numel(), int(counts.max()) if counts.numel() else 0)
    padded_scores = scores.new_zeros(shape)
    padded_labels = labels.new_zeros(shape, dtype=scores.dtype)
    mask = torch.zeros(shape, dtype=torch.bool, device=scores.device)
    rows = inverse[order]
    padded_scores[rows, slot] = scores[order]
    padded_labels[rows, slot] = labels[order].to(scores.dtype)
    mask[rows, slot] = True
    return padded_scores, padded_labels, mask


def first_of_each(ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The sorted distinct values of ``ids`` (N,), the index of each one's first occurrence, and
    how often each occurs: ``(U,)`` each (an item corpus from rows that repeat items)."""
    unique, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    first = torch.full((unique.numel(),), ids.numel(), dtype=torch.int64, device=ids.device)
    first = first.scatter_reduce(0, inverse, torch.arange(ids.numel(), device=ids.device), "amin")
    return unique, first, counts


def listwise_softmax_loss_sum(scores: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, int]:
    """ListNet-style softmax cross-entropy per group: the labels, normalized to a distribution
    over the group's rows, against the softmax of the scores; groups without a positive label
    are skipped. Returns the sum over the groups that count, and how many count."""
    neg = torch.finfo(scores.dtype).min
    log_p = torch.log_softmax(torch.where(mask, scores, neg), dim=1)  # (G, L)
    gains = torch.where(mask, labels.clamp(min=0), 0.0)  # (G, L)
    total = gains.sum(dim=1, keepdim=True)  # (G, 1)
    valid = total.squeeze(1) > 0  # (G,)
    target = gains / total.clamp(min=1e-12)  # (G, L)
    per_group = -(target * torch.where(mask, log_p, 0.0)).sum(dim=1)  # (G,)
    return per_group[valid].sum(), int(valid.sum())


def listwise_softmax_loss(scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """:func:`listwise_softmax_loss_sum` as a mean over the groups that count (0 if none)."""
    total, count = listwise_softmax_loss_sum(scores, labels, mask)
    return total / count if count else scores.sum() * 0.0


def pairwise_logistic_loss_sum(scores: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, int]:
    """RankNet logistic loss over every pair (i, j) of one group with label_i > label_j:
    ``log(1 + exp(-(s_i - s_j)))``. Returns the sum over all such pairs, and how many there are."""
    better = (labels.unsqueeze(2) > labels.unsqueeze(1)) & mask.unsqueeze(2) & mask.unsqueeze(1)  # (G, L, L)
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)  # (G, L, L)
    losses = F.softplus(-diff)  # (G, L, L)
    return torch.where(better, losses, 0.0).sum(), int(better.sum())


def pairwise_logistic_loss(scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """:func:`pairwise_logistic_loss_sum` as a mean over the pairs (0 if none)."""
    total, count = pairwise_logistic_loss_sum(scores, labels, mask)
    return total / count if count else scores.sum() * 0.0


class InBatchSoftmax(nn.Module):
    """Two-tower contrastive loss with in-batch negatives (CLIP-style, query -> item), a
    learnable temperature, and the logQ correction for item popularity (Yi et al. 2019).

    Row b's item is the positive of row b's query; every other item in the batch is a negative.
    Popular items appear as negatives more often than uniform sampling would give, so the
    logit of item j is lowered by ``log q_j`` (its sampling probability) before the softmax.

    Args:
        init_temperature: starting temperature (learned as ``log(1/T)``, clamped to T >= 0.01).
    """

    def __init__(self, init_temperature: float = 0.07) -> None:
        super().__init__()
        self.log_inv_temperature = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @property
    def temperature(self) -> Tensor:
        return 1.0 / self.log_inv_temperature.clamp(max=math.log(100.0)).exp()

    def forward(
        self,
        queries: Tensor,
        items: Tensor,
        item_log_q: Tensor | None = None,
        item_ids: Tensor | None = None,
        extra_items: Tensor | None = None,
        extra_ids: Tensor | None = None,
        extra_log_q: Tensor | None = None,
    ) -> Tensor:
        """Mean cross-entropy of each query against the batch's items (and extra negatives).

        Args:
            queries: (B, D) query embeddings.
            items: (B, D) item embeddings, row b the positive of query b.
            item_log_q: (B,) log sampling probability of each row's item (None: no correction).
            item_ids: (B,) item ids; an item that occurs twice in the batch is not a negative of
                its other row, and counts once as a negative of the rest (None: all rows are
                distinct items).
            extra_items: (S, D) more negatives for every query (sampled items, or the whole
                catalogue); one whose id is among ``item_ids`` is left out (the batch's own
                column stands for that item).
            extra_ids: (S,) their item ids (needed with ``item_ids``).
            extra_log_q: (S,) their logit corrections (None: none).
        """
        # float32 even under bf16 autocast: at T ~ 0.05 bf16 logits would be off by ~0.1
        q, v = F.normalize(queries.float(), dim=-1), F.normalize(items.float(), dim=-1)  # (B, D), (B, D)
        with torch.autocast(device_type=q.device.type, enabled=False):
            logits = q @ v.T / self.temperature  # (B, B)
            if extra_items is not None:
                extra = q @ F.normalize(extra_items.float(), dim=-1).T / self.temperature  # (B, S)
        if item_log_q is not None:
            logits = logits - item_log_q.unsqueeze(0)  # (B, B): correct every column by its item's log q
        if item_ids is not None:
            # every item once in each row's softmax: a repeat of the row's own item is not its
            # negative, and another row's item repeated in the batch counts once (its first column)
            same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)  # (B, B)
            repeat = same.tril(diagonal=-1).any(dim=1)  # (B,) column j repeats an earlier column's item
            drop = same | repeat.unsqueeze(0)  # (B, B)
            drop.fill_diagonal_(False)
            logits = logits.masked_fill(drop, torch.finfo(logits.dtype).min)
        if extra_items is not None:
            if extra_log_q is not None:
                extra = extra - extra_log_q.unsqueeze(0)  # (B, S)
            if item_ids is not None and extra_ids is not None:
                in_batch = torch.isin(extra_ids, item_ids)  # (S,) items the batch already holds
                extra = extra.masked_fill(in_batch.unsqueeze(0), torch.finfo(extra.dtype).min)
            logits = torch.cat([logits, extra], dim=1)  # (B, B + S)
        target = torch.arange(queries.shape[0], device=queries.device)
        return F.cross_entropy(logits, target)


def _score_order(scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each group's rows from the highest score down, padding last, with their tie blocks.

    A NaN score (a diverged model) ranks below every real score, tied with the other NaNs.

    Returns:
        order: (G, L) row index at each rank position.
        block: (G, L) int64 tie-block number at each position (rows with equal scores share one;
            padding gets its own).
        real: (G, L) bool, the position holds a real row.
    """
    key = torch.where(mask, scores.nan_to_num(nan=float("-inf")), float("-inf"))  # (G, L)
    by_score = key.argsort(dim=1, descending=True, stable=True)  # (G, L)
    real_first = (~mask.gather(1, by_score)).to(torch.int8).argsort(dim=1, stable=True)  # padding last
    order = by_score.gather(1, real_first)  # (G, L)
    sorted_key, real = key.gather(1, order), mask.gather(1, order)  # (G, L) each
    starts = torch.ones_like(real)
    starts[:, 1:] = (sorted_key[:, 1:] != sorted_key[:, :-1]) | (real[:, 1:] != real[:, :-1])
    return order, starts.long().cumsum(dim=1) - 1, real


def _block_mean(values: Tensor, block: Tensor) -> Tensor:
    """Each position's value replaced by the mean over its tie block: (G, L)."""
    sums = torch.zeros_like(values).scatter_add_(1, block, values)  # (G, L) per block
    counts = torch.zeros_like(values).scatter_add_(1, block, torch.ones_like(values))
    return (sums / counts.clamp(min=1)).gather(1, block)


def _ranked(scores: Tensor, values: Tensor, mask: Tensor) -> Tensor:
    """``values`` in score order, padding last and 0, each averaged over its tie block: (G, L).

    Averaging within a block is the expectation over every order of the tied rows, so any metric
    linear in the per-position values (DCG, hits in the top k) is its expectation under random
    tie-breaking: a constant scorer gets the random-order value whatever the row order is.
    """
    order, block, real = _score_order(scores, mask)
    return _block_mean(torch.where(real, values.gather(1, order), 0.0), block)


def ndcg_at_k(scores: Tensor, labels: Tensor, mask: Tensor, k: int) -> Tensor:
    """NDCG@k per group with gains ``2^label - 1`` and discount ``1/log2(rank + 1)``: (G,);
    a group with no relevant row scores 0. Tied scores: the expectation over their orders."""
    gains = _ranked(scores, torch.pow(2.0, labels) - 1, mask)  # (G, L)
    ideal = torch.pow(2.0, torch.where(mask, labels, 0.0).sort(dim=1, descending=True).values) - 1  # (G, L)
    top = min(k, scores.shape[1])
    discount = 1.0 / torch.log2(torch.arange(2, top + 2, dtype=scores.dtype, device=scores.device))  # (k,)
    dcg, idcg = (gains[:, :top] * discount).sum(1), (ideal[:, :top] * discount).sum(1)
    return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), 0.0)


def mrr(scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Reciprocal rank of the first relevant row per group: (G,); 0 without one.

    Tied scores: the expectation over their orders. If the first tie block holding a relevant
    row starts after ``s`` rows and holds ``n`` rows, ``r`` of them relevant, the first relevant
    row is at ``s + j`` with probability ``C(n - j, r - 1) / C(n, r)``, j = 1 .. n - r + 1.
    """
    order, block, real = _score_order(scores, mask)
    relevant = real & (labels.gather(1, order) > 0)  # (G, L)
    found = relevant.any(dim=1)  # (G,)
    first_block = torch.where(relevant, block, block.shape[1]).min(dim=1, keepdim=True).values  # (G, 1)
    in_block = block == first_block  # (G, L)
    s = in_block.long().argmax(dim=1, keepdim=True).double()  # (G, 1) rows ranked above the block
    n = in_block.sum(dim=1, keepdim=True).double()  # (G, 1)
    r = (relevant & in_block).sum(dim=1, keepdim=True).double().clamp(min=1)  # (G, 1)
    j = torch.arange(1, block.shape[1] + 1, dtype=torch.float64, device=scores.device).unsqueeze(0)  # (1, L)

    def log_choose(a: Tensor, b: Tensor) -> Tensor:
        return torch.lgamma(a + 1) - torch.lgamma(b + 1) - torch.lgamma(a - b + 1)

    possible = j <= n - r + 1  # (G, L)
    log_p = log_choose((n - j).clamp(min=0), r - 1) - log_choose(n, r)  # (G, L)
    expected = torch.where(possible, log_p.exp() / (s + j), 0.0).sum(dim=1)  # (G,)
    return torch.where(found, expected, 0.0).to(scores.dtype)


def recall_at_k(scores: Tensor, labels: Tensor, mask: Tensor, k: int) -> Tensor:
    """Share of a group's relevant rows ranked in the top k: (G,); 0 without any. Tied scores:
    the expectation over their orders."""
    relevant = _ranked(scores, (labels > 0).to(scores.dtype), mask)  # (G, L), padding 0
    total = (torch.where(mask, labels, 0.0) > 0).sum(dim=1)  # (G,)
    hits = relevant[:, :k].sum(dim=1)
    return torch.where(total > 0, hits / total.clamp(min=1), 0.0).to(scores.dtype)


def target_ranks(scores: Tensor, target: Tensor, exclude: Tensor | None = None) -> Tensor:
    """Where each query's one relevant item lands among all candidates: (Q, 2) float64,
    ``[:, 0]`` the candidates scored higher, ``[:, 1]`` those scored equal, the item itself
    included (so >= 1). :func:`rank_values` turns these into metrics.

    Args:
        scores: (Q, C) score of every candidate for every query.
        target: (Q,) index of each query's relevant candidate.
        exclude: (Q, C) bool, candidates left out of the ranking (e.g. items already seen);
            the target itself is never left out.

    Ties are kept as a count, not a rank, so the metrics can be the exact expectation over
    every order of the tied candidates: a constant scorer gets Recall@k = k / C, as a random
    order would (popularity baselines tie a lot). A NaN score (a diverged model) ranks as the
    lowest score, so it can never look better than a real one.
    """
    scores = scores.nan_to_num(nan=float("-inf"))
    own = scores.gather(1, target.unsqueeze(1))  # (Q, 1)
    higher, equal = scores > own, scores == own  # (Q, C) each
    if exclude is not None:
        keep = ~exclude
        keep.scatter_(1, target.unsqueeze(1), True)
        higher, equal = higher & keep, equal & keep
    return torch.stack([higher.sum(dim=1).double(), equal.sum(dim=1).double()], dim=1)  # (Q, 2)


def rank_values(ranks: Tensor, k: int) -> dict:
    """Per-query ``ndcg_at_k``, ``recall_at_k`` (a hit in the top k) and ``mrr`` of
    single-target queries from :func:`target_ranks`' (..., 2) counts: float64 (...,) each.

    With ``a`` candidates above the target and ``t`` tied with it (itself included), the target
    is equally likely at every rank ``a + 1 .. a + t``; each metric is its mean over those ranks
    (the expectation over tie orders): recall ``clamp((k - a) / t, 0, 1)``, reciprocal rank
    ``(H(a + t) - H(a)) / t`` (harmonic numbers), NDCG the mean of ``1 / log2(r + 1)`` over the
    ranks ``r <= k``.
    """
    if ranks.shape[-1:] != (2,) or not bool((ranks[..., 1] >= 1).all()):
        raise ValueError(
            f"ranks must be target_ranks' (..., 2) counts (above, tied >= 1), got shape {tuple(ranks.shape)}"
        )
    ranks = ranks.to(torch.float64)
    above, tied = ranks[..., 0], ranks[..., 1]
    recall = ((k - above) / tied).clamp(0.0, 1.0)
    # H(n) = digamma(n + 1) + Euler's constant, so H(a + t) - H(a) = digamma(a + t + 1) - digamma(a + 1)
    spread = (torch.special.digamma(above + tied + 1.0) - torch.special.digamma(above + 1.0)) / tied
    mrr = torch.where(tied == 1, 1.0 / (above + 1.0), spread)  # no tie: exactly 1 / rank
    positions = torch.arange(1, k + 2, dtype=torch.float64, device=ranks.device)  # (k + 1,) ranks 1 .. k + 1
    discounts = torch.cat([positions.new_zeros(1), 1.0 / torch.log2(positions[:-1] + 1)]).cumsum(
        0
    )  # (k + 1,) sums over ranks 1..n
    cut = lambda n: discounts[n.clamp(max=k).long()]  # noqa: E731  sum of the discounts of ranks 1..min(n, k)
    ndcg = (cut(above + tied) - cut(above)) / tied
    return {f"ndcg_at_{k}": ndcg, f"recall_at_{k}": recall, "mrr": mrr}


def rank_metrics(ranks: Tensor, k: int) -> dict:
    """The means of :func:`rank_values` as plain floats (keys spell k, e.g. ``ndcg_at_10``)."""
    return {name: float(values.mean()) for name, values in rank_values(ranks, k).items()}
