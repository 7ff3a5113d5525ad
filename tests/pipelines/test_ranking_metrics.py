"""Ranking validation metrics: hand-computed values, and independence from the batching."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.pipelines.training.ranking_metrics import GroupRankingMetrics, RetrievalMetrics


def test_group_metrics_by_hand():
    # group 7: scores rank rows b, a, c; only a is relevant -> rank 2
    # group 3: one relevant row ranked first; group 9: no relevant row (not counted)
    scores = torch.tensor([0.5, 0.9, 0.1, 2.0, 1.0, 0.3, 0.2])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    group = torch.tensor([7, 7, 7, 3, 3, 9, 9])
    metrics = GroupRankingMetrics("listwise", k=1)
    metrics.update(scores[:4], labels[:4], group[:4])  # group 3 split across two updates
    metrics.update(scores[4:], labels[4:], group[4:])
    out = metrics.compute()
    assert out["groups"] == 2.0
    assert out["mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert out["recall_at_1"] == pytest.approx(0.5)
    assert out["ndcg_at_1"] == pytest.approx(0.5)
    # listwise loss: mean over the two groups of -log softmax(relevant row)
    g7 = -math.log(math.exp(0.5) / (math.exp(0.5) + math.exp(0.9) + math.exp(0.1)))
    g3 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.0)))
    assert out["loss"] == pytest.approx((g7 + g3) / 2)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(1, 15), min_size=1, max_size=6))
def test_group_metrics_do_not_depend_on_the_batching(seed, cuts):
    g = torch.Generator().manual_seed(seed)
    n = sum(cuts)
    scores, labels, group = (
        torch.randn(n, generator=g),
        torch.randint(0, 3, (n,), generator=g).float(),
        torch.randint(0, 5, (n,), generator=g),
    )
    whole, parts = GroupRankingMetrics("pairwise", k=2), GroupRankingMetrics("pairwise", k=2)
    whole.update(scores, labels, group)
    start = 0
    for size in cuts:
        parts.update(scores[start : start + size], labels[start : start + size], group[start : start + size])
        start += size
    a, b = whole.compute(), parts.compute()
    assert a.keys() == b.keys()
    for key in a:
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key])


def test_retrieval_metrics_by_hand():
    # items 10 and 20 (item 10 appears twice: one corpus entry); 3 queries
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    ids = torch.tensor([10, 20, 10])
    queries = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8]])
    metrics = RetrievalMetrics(k=1, temperature=0.5)
    metrics.update(queries, items, ids)
    out = metrics.compute()
    # query 0 -> item 10 ranked 1st; query 1 -> item 20 ranked 2nd; query 2 -> item 10 ranked 2nd
    assert out["corpus_items"] == 2.0
    assert out["recall_at_1"] == pytest.approx(1 / 3)
    assert out["mrr"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert out["ndcg_at_1"] == pytest.approx(1 / 3)
    # rows: (target score, other score) -> the cross-entropy of the target
    expected = [
        -math.log(math.exp(t / 0.5) / (math.exp(t / 0.5) + math.exp(o / 0.5)))
        for t, o in [(0.9, 0.1), (0.2, 0.8), (0.2, 0.8)]
    ]
    assert out["loss"] == pytest.approx(sum(expected) / 3)


def test_empty_metrics_raise():
    with pytest.raises(ValueError, match="no rows"):
        GroupRankingMetrics("listwise").compute()
    with pytest.raises(ValueError, match="no rows"):
        RetrievalMetrics().compute()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["listwise", "pairwise"]))
def test_chunked_set_loss_equals_the_one_shot_loss(seed, kind):
    import deepsets.pipelines.training.ranking_metrics as rm
    from deepsets.tasks import task_loss

    g = torch.Generator().manual_seed(seed)
    n = 60
    scores, labels, group = (
        torch.randn(n, generator=g).double(),
        torch.randint(0, 3, (n,), generator=g).double(),
        torch.randint(0, 9, (n,), generator=g),
    )
    expected = float(task_loss(kind, scores, labels, group))
    budget = rm._PAIR_BUDGET
    try:
        rm._PAIR_BUDGET = 50  # many small chunks
        assert rm.grouped_loss(kind, scores, labels, group) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    finally:
        rm._PAIR_BUDGET = budget


def test_nan_scores_never_rank_first():
    from deepsets.ranking import target_ranks

    scores = torch.tensor([[float("nan"), 0.1, 0.2], [0.3, float("nan"), 0.1]])
    ranks = target_ranks(scores, torch.tensor([0, 0]))
    assert ranks.tolist() == [
        [2.0, 1.0],
        [0.0, 1.0],
    ]  # NaN target: last (2 above it); a NaN rival: below every real score
