"""Ranking losses and metrics against hand-computed values and torchmetrics."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.retrieval import retrieval_normalized_dcg, retrieval_reciprocal_rank

from deepsets import ranking as rk


def test_pad_groups_keeps_rows_in_order_and_masks_padding():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    labels = torch.tensor([1, 0, 0, 1, 1])
    s, y, m = rk.pad_groups(scores, labels, torch.tensor([5, 3, 5, 3, 7]))
    torch.testing.assert_close(s, torch.tensor([[0.2, 0.4], [0.1, 0.3], [0.5, 0.0]]))
    assert y.tolist() == [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
    assert m.tolist() == [[True, True], [True, True], [True, False]]


def test_listwise_loss_by_hand_and_groups_without_positives_skipped():
    s = torch.tensor([[0.0, math.log(3.0)], [5.0, -5.0]])
    y = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    m = torch.ones(2, 2, dtype=torch.bool)
    assert float(rk.listwise_softmax_loss(s, y, m)) == pytest.approx(-math.log(0.75))
    padded = torch.tensor([[0.0, math.log(3.0), 100.0]])  # the padded slot must not count
    assert float(
        rk.listwise_softmax_loss(padded, torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[True, True, False]]))
    ) == pytest.approx(-math.log(0.75))


def test_pairwise_loss_by_hand():
    s, y = torch.tensor([[2.0, 0.0, 9.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, False]])  # the masked 9.0 would otherwise dominate
    assert float(rk.pairwise_logistic_loss(s, y, m)) == pytest.approx(math.log(1 + math.exp(-2.0)))
    assert float(rk.pairwise_logistic_loss(s, torch.zeros(1, 3), m)) == 0.0  # no ordered pair


def test_metrics_by_hand():
    s, y, m = torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[0.0, 1.0, 1.0]]), torch.ones(1, 3, dtype=torch.bool)
    idcg = 1 + 1 / math.log2(3)
    assert float(rk.ndcg_at_k(s, y, m, 2)) == pytest.approx((1 / math.log2(3)) / idcg)
    assert float(rk.mrr(s, y, m)) == pytest.approx(0.5)
    assert float(rk.recall_at_k(s, y, m, 1)) == 0.0 and float(rk.recall_at_k(s, y, m, 2)) == pytest.approx(0.5)
    assert float(rk.ndcg_at_k(s, torch.zeros(1, 3), m, 2)) == 0.0  # nothing relevant


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), k=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_ndcg_and_mrr_match_torchmetrics_on_binary_labels(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, generator=g)
    labels = (torch.rand(n, generator=g) > 0.6).long()
    s, y, m = rk.pad_groups(scores, labels, torch.zeros(n, dtype=torch.long))
    if labels.sum() == 0:
        assert float(rk.ndcg_at_k(s, y, m, k)) == 0.0
        return
    probs = torch.sigmoid(scores)  # same order; torchmetrics ignores targets whose score is <= 0
    assert float(rk.ndcg_at_k(s, y, m, k)) == pytest.approx(
        float(retrieval_normalized_dcg(probs, labels, top_k=k)), abs=1e-5
    )
    assert float(rk.mrr(s, y, m)) == pytest.approx(float(retrieval_reciprocal_rank(probs, labels)), abs=1e-6)


def _metrics_of_order(order, labels, k):
    """NDCG@k, reciprocal rank and recall@k of one group's rows listed in ``order``."""
    gains = [2.0 ** labels[i] - 1 for i in order]
    ideal = sorted((2.0**v - 1 for v in labels), reverse=True)
    dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains[:k]))
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal[:k]))
    relevant = [labels[i] > 0 for i in order]
    rr = 1.0 / (relevant.index(True) + 1) if any(relevant) else 0.0
    recall = sum(relevant[:k]) / max(sum(relevant), 1)
    return (dcg / idcg if idcg > 0 else 0.0), rr, recall


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from([0.0, 1.0, 2.0, float("nan")]), st.integers(0, 2)), min_size=1, max_size=6),
    pad=st.integers(0, 2),
    k=st.integers(1, 6),
)
def test_tied_scores_give_the_mean_over_every_order_of_the_tied_rows(rows, pad, k):
    """Brute force: every ordering consistent with the scores (NaN lowest), equally likely."""
    import itertools

    scores = [s for s, _ in rows]
    labels = [float(y) for _, y in rows]
    key = [float("-inf") if math.isnan(v) else v for v in scores]
    orders = [p for p in itertools.permutations(range(len(rows))) if all(key[a] >= key[b] for a, b in zip(p, p[1:]))]
    expected = [sum(v) / len(orders) for v in zip(*(_metrics_of_order(p, labels, k) for p in orders))]
    # padding slots hold a high score and a label, and must change nothing
    s = torch.tensor([scores + [5.0] * pad])
    y = torch.tensor([labels + [2.0] * pad])
    m = torch.tensor([[True] * len(rows) + [False] * pad])
    got = [float(rk.ndcg_at_k(s, y, m, k)), float(rk.mrr(s, y, m)), float(rk.recall_at_k(s, y, m, k))]
    assert got == pytest.approx(expected, abs=1e-5)


def test_a_constant_scorer_does_not_profit_from_row_order():
    y = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # relevant rows first: breaking ties by row order would score 1
    s, m = torch.zeros(1, 4), torch.ones(1, 4, dtype=torch.bool)
    assert float(rk.recall_at_k(s, y, m, 2)) == pytest.approx(0.5)
    assert float(rk.mrr(s, y, m)) == pytest.approx((1 / 1) * 1 / 2 + (1 / 2) * 1 / 3 + (1 / 3) * 1 / 6)
    idcg = 1 + 1 / math.log2(3)
    assert float(rk.ndcg_at_k(s, y, m, 2)) == pytest.approx(0.5 * idcg / idcg)


def test_in_batch_softmax_by_hand_log_q_and_duplicates():
    loss = rk.InBatchSoftmax(init_temperature=0.5)
    eye = torch.eye(3)
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2))  # cos 1 / T = 2 for the positive, 0 for the rest
    with torch.no_grad():
        assert float(loss(eye, eye)) == pytest.approx(expected, rel=1e-5)
        assert float(loss(eye, eye, item_log_q=torch.full((3,), -4.0))) == pytest.approx(
            expected, rel=1e-5
        )  # a constant shift
        popular = torch.tensor([0.0, -5.0, -5.0])  # item 0 sampled far more often: its logit goes down
        assert float(loss(eye, eye, item_log_q=popular)) != pytest.approx(expected)
        items = torch.stack([eye[0], eye[1], eye[1]])  # rows 1 and 2 hold the same item
        masked = loss(eye, items, item_ids=torch.tensor([7, 8, 8]))  # it is not its own negative
        assert torch.isfinite(masked) and float(masked) < float(loss(eye, items))
        assert float(loss.temperature) == pytest.approx(0.5)
    loss(torch.randn(4, 8), torch.randn(4, 8)).backward()
    assert loss.log_inv_temperature.grad is not None  # the temperature is learned


def test_target_ranks_ties_and_exclusion_by_hand():
    from deepsets.ranking import rank_metrics, target_ranks

    scores = torch.tensor(
        [
            [0.9, 0.5, 0.5, 0.1],  # target 1 ties with item 2: rank 2 or 3
            [
                0.3,
                0.3,
                0.3,
                0.3,
            ],  # constant scorer: any of ranks 1..4 (1..3 once item 3 is excluded; the target 0 never is)
            [0.9, 0.8, 0.2, 0.1],
        ]
    )  # target 2; items 0 and 1 excluded -> rank 1
    target = torch.tensor([1, 0, 2])
    exclude = torch.tensor([[False] * 4, [True, False, False, True], [True, True, False, False]])
    assert target_ranks(scores, target).tolist() == [[1, 2], [0, 4], [2, 1]]  # (higher, tied with the target itself)
    ranks = target_ranks(scores, target, exclude)  # the target itself is never excluded
    assert ranks.tolist() == [[1, 2], [0, 3], [0, 1]]
    out = rank_metrics(ranks, k=2)
    assert out["recall_at_2"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)  # P(rank <= 2) of each query
    ndcg = [(1 / math.log2(3)) / 2, (1 + 1 / math.log2(3)) / 3, 1.0]
    assert out["ndcg_at_2"] == pytest.approx(sum(ndcg) / 3)
    assert out["mrr"] == pytest.approx(((1 / 2 + 1 / 3) / 2 + (1 + 1 / 2 + 1 / 3) / 3 + 1) / 3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=1, max_size=6), st.data())
def test_rank_values_are_the_mean_over_every_order_of_the_ties(scores, data):
    """Brute force: every tie-breaking order of the candidates (all permutations as secondary
    keys), the target's metric at each, averaged."""
    from deepsets.ranking import rank_values, target_ranks

    target = data.draw(st.integers(0, len(scores) - 1))
    k = data.draw(st.integers(1, 4))
    found = {
        name: float(v[0])
        for name, v in rank_values(
            target_ranks(torch.tensor([scores], dtype=torch.float64), torch.tensor([target])), k
        ).items()
    }
    totals = {name: 0.0 for name in found}
    orders = list(itertools.permutations(range(len(scores))))
    for order in orders:  # order[c]: candidate c's place among the tied
        ranked = sorted(range(len(scores)), key=lambda c: (-scores[c], order[c]))
        rank = ranked.index(target) + 1
        totals[f"ndcg_at_{k}"] += 1 / math.log2(rank + 1) if rank <= k else 0.0
        totals[f"recall_at_{k}"] += float(rank <= k)
        totals["mrr"] += 1 / rank
    for name, total in totals.items():
        assert found[name] == pytest.approx(total / len(orders), abs=1e-12), name


def test_a_constant_scorer_gets_the_random_order_values():
    from deepsets.ranking import rank_metrics, target_ranks

    out = rank_metrics(target_ranks(torch.zeros(3, 1000), torch.tensor([0, 10, 999])), k=10)
    assert out["recall_at_10"] == pytest.approx(10 / 1000)
    assert out["mrr"] == pytest.approx(sum(1 / r for r in range(1, 1001)) / 1000)


def test_task_loss_grouped_kinds_need_groups():
    from deepsets.tasks import task_loss

    with pytest.raises(ValueError, match="query group"):
        task_loss("listwise", torch.zeros(3, 1), torch.zeros(3))


def test_rank_values_refuses_anything_but_target_ranks_counts():
    from deepsets.ranking import rank_values

    with pytest.raises(ValueError, match=r"\(\.\.\., 2\) counts"):
        rank_values(torch.tensor([1.0, 2.0, 3.0]), 10)  # plain 1-based ranks
    with pytest.raises(ValueError, match="tied >= 1"):
        rank_values(torch.zeros(4, 2), 10)  # zero padding: no target
