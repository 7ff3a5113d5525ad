"""MovieLens retrieval baselines and top-k metrics against hand-computed values."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.movielens import baselines as mb

# 4 users, 5 items. User 3 rated item 4 twice: two interactions, one co-occurrence user.
USERS = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3])
ITEMS = np.array([0, 1, 2, 0, 1, 1, 3, 4, 4])
# Users per item n = [2, 3, 1, 1, 1]; co-occurrences C[0,1] = 2, C[0,2] = C[1,2] = C[1,3] = 1, so
# sim[0,1] = 2/sqrt(6), sim[0,2] = 1/sqrt(2), sim[1,2] = sim[1,3] = 1/sqrt(3); item 4 has none.
S01, S02, S12 = 2 / math.sqrt(6), 1 / math.sqrt(2), 1 / math.sqrt(3)


def test_most_popular_counts_interactions():
    assert mb.most_popular_scores(ITEMS, 5).tolist() == [2.0, 3.0, 1.0, 1.0, 2.0]
    assert mb.most_popular_scores(np.array([], dtype=np.int64), 3).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="item indices"):
        mb.most_popular_scores(np.array([5]), 5)


def test_item_knn_by_hand():
    histories = [np.array([0]), np.array([1]), np.array([0, 1]), np.array([], dtype=np.int64), np.array([4])]
    got = mb.item_knn_scores(USERS, ITEMS, histories, 5)
    want = [
        [0, S01, S02, 0, 0],
        [S01, 0, S12, S12, 0],
        [S01, S01, S02 + S12, S12, 0],
        [0, 0, 0, 0, 0],  # no history
        [0, 0, 0, 0, 0],  # an item nobody else's users rated
    ]
    assert got.dtype == np.float32 and got.shape == (5, 5)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_item_knn_keeps_top_neighbors_lower_index_on_ties():
    # k=1: row 0 keeps item 1, row 1 keeps item 0, row 2 keeps item 0 (1/sqrt 2 > 1/sqrt 3).
    got = mb.item_knn_scores(USERS, ITEMS, [np.array([0, 1]), np.array([2])], 5, k_neighbors=1)
    np.testing.assert_allclose(got, [[S01, S01, 0, 0, 0], [S02, 0, 0, 0, 0]], rtol=1e-6)
    # k=2: row 1 keeps item 0 and, of the tied items 2 and 3, the lower index 2.
    got = mb.item_knn_scores(USERS, ITEMS, [np.array([1])], 5, k_neighbors=2)
    np.testing.assert_allclose(got, [[S01, 0, S12, 0, 0]], rtol=1e-6)
    with pytest.raises(ValueError, match="k_neighbors"):
        mb.item_knn_scores(USERS, ITEMS, [np.array([1])], 5, k_neighbors=0)


SCORES = np.array(
    [
        [0.9, 0.5, 0.5, 0.1, 0.0],  # target 2; item 0 excluded -> tied with item 1 -> rank 1 or 2
        [0.1, 0.2, 0.3, 0.4, 0.5],  # target 0, also listed in exclude (kept); item 4 excluded -> rank 4
        [1.0, 0.0, 0.0, 0.0, 0.0],  # target 3, below item 0, tied with items 1, 2, 4 -> rank 2, 3, 4 or 5
    ]
)
TARGETS = np.array([2, 0, 3])
EXCLUDE = [np.array([0]), np.array([0, 4]), np.array([], dtype=np.int64)]


def test_topk_metrics_by_hand_with_exclusion_and_ties():
    before = SCORES.copy()
    got = mb.topk_metrics(SCORES, TARGETS, EXCLUDE, k=3)  # each metric: the mean over the tied ranks
    ndcg = ((1 + 1 / math.log2(3)) / 2 + 0 + (1 / math.log2(3) + 1 / math.log2(4)) / 4) / 3
    mrr = ((1 + 1 / 2) / 2 + 1 / 4 + (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4) / 3
    assert got == pytest.approx({"ndcg_at_3": ndcg, "recall_at_3": (1 + 0 + 2 / 4) / 3, "mrr": mrr})
    np.testing.assert_array_equal(SCORES, before)  # exclusion works on a copy
    got = mb.topk_metrics(SCORES, TARGETS, EXCLUDE, k=1)  # only row 0, first in half its orders
    assert got == pytest.approx({"ndcg_at_1": 1 / 6, "recall_at_1": 1 / 6, "mrr": mrr})


def test_topk_metrics_without_exclusion():
    got = mb.topk_metrics(SCORES, TARGETS, None, k=3)  # ranks 2 or 3; 5; 2, 3, 4 or 5
    ndcg = ((1 / math.log2(3) + 1 / math.log2(4)) / 2 + 0 + (1 / math.log2(3) + 1 / math.log2(4)) / 4) / 3
    mrr = ((1 / 2 + 1 / 3) / 2 + 1 / 5 + (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4) / 3
    assert got == pytest.approx({"ndcg_at_3": ndcg, "recall_at_3": (1 + 0 + 2 / 4) / 3, "mrr": mrr})


def test_topk_metrics_chunks_agree(monkeypatch):
    whole = mb.topk_metrics(SCORES.astype(np.float32), TARGETS, EXCLUDE, k=3)
    monkeypatch.setattr(mb, "METRIC_CHUNK", 2)  # rows 0-1, then row 2
    assert mb.topk_metrics(SCORES.astype(np.float32), TARGETS, EXCLUDE, k=3) == pytest.approx(whole)


def test_topk_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        mb.topk_metrics(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        mb.topk_metrics(SCORES, np.array([0, 1]))
    with pytest.raises(ValueError, match="item indices"):
        mb.topk_metrics(SCORES, np.array([0, 1, 5]))
    with pytest.raises(ValueError, match="one array per query"):
        mb.topk_metrics(SCORES, TARGETS, EXCLUDE[:2])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_topk_metrics_match_a_brute_force_ranking(data):
    num_queries = data.draw(st.integers(1, 6), label="U")
    num_items = data.draw(st.integers(1, 8), label="I")
    # Small integer scores, so ties are frequent.
    scores = np.array(
        data.draw(st.lists(st.integers(-3, 3), min_size=num_queries * num_items, max_size=num_queries * num_items)),
        dtype=np.float64,
    ).reshape(num_queries, num_items)
    targets = np.array(data.draw(st.lists(st.integers(0, num_items - 1), min_size=num_queries, max_size=num_queries)))
    exclude = [
        np.array(data.draw(st.lists(st.integers(0, num_items - 1), max_size=num_items)), dtype=np.int64)
        for _ in range(num_queries)
    ]
    possible = []  # per query: the ranks its target can take, each as likely, over the orders of its ties
    for u in range(num_queries):
        rivals = [j for j in range(num_items) if j == targets[u] or j not in set(exclude[u])]
        own = scores[u, targets[u]]
        above, tied = sum(scores[u, j] > own for j in rivals), sum(scores[u, j] == own for j in rivals)
        possible.append(np.arange(above + 1, above + tied + 1, dtype=np.float64))
    recalls = []
    for k in range(1, num_items + 2):
        got = mb.topk_metrics(scores, targets, exclude, k=k)
        assert got[f"recall_at_{k}"] == pytest.approx(np.mean([np.mean(r <= k) for r in possible]))
        assert got[f"ndcg_at_{k}"] == pytest.approx(
            np.mean([np.mean(np.where(r <= k, 1 / np.log2(r + 1), 0.0)) for r in possible])
        )
        assert got["mrr"] == pytest.approx(np.mean([np.mean(1 / r) for r in possible]))
        recalls.append(got[f"recall_at_{k}"])
    assert recalls == sorted(recalls) and recalls[-1] == 1.0  # monotone in k, every target within I
    perfect = np.where(np.arange(num_items) == targets[:, None], 1.0, 0.0)  # the target alone scores highest
    assert mb.topk_metrics(perfect, targets, exclude, k=1) == {"ndcg_at_1": 1.0, "recall_at_1": 1.0, "mrr": 1.0}


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_item_knn_matches_dense_cosine(data):
    num_users, num_items = data.draw(st.integers(1, 6), label="users"), data.draw(st.integers(1, 7), label="I")
    pairs = data.draw(st.lists(st.tuples(st.integers(0, num_users - 1), st.integers(0, num_items - 1)), max_size=25))
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    histories = [
        np.array(h, dtype=np.int64)
        for h in data.draw(st.lists(st.lists(st.integers(0, num_items - 1), max_size=5), min_size=1, max_size=4))
    ]
    x = np.zeros((num_users, num_items))
    x[users, items] = 1.0  # (users, I) who rated what, once
    co = x.T @ x
    n = np.diag(co).copy()
    np.fill_diagonal(co, 0.0)
    norm = np.sqrt(np.outer(n, n))
    sim = np.divide(co, norm, out=np.zeros_like(co), where=norm > 0)
    want = np.array([sim[h].sum(axis=0) for h in histories])  # repeated history items count twice
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mb, "SIMILARITY_CHUNK", 3)  # several row blocks
        np.testing.assert_allclose(mb.item_knn_scores(users, items, histories, num_items), want, rtol=1e-5, atol=1e-6)


def test_ease_weights_are_each_columns_ridge_regression_without_itself():
    """EASE's closed form equals, column by column, the ridge regression of item j on every
    other item (the zero-diagonal constraint), with the same penalty."""
    from benchmarks.movielens.baselines import ease_scores, ease_weights

    rng = np.random.default_rng(0)
    x = (rng.random((40, 7)) < 0.4).astype(float)
    users, items = np.nonzero(x)
    b = ease_weights(users, items, 7, l2=3.0)
    assert np.all(np.diag(b) == 0)
    for j in range(7):
        others = np.arange(7) != j
        a = x[:, others]
        expected = np.linalg.solve(a.T @ a + 3.0 * np.eye(6), a.T @ x[:, j])
        np.testing.assert_allclose(b[others, j], expected, atol=1e-10)
    scores = ease_scores(users, items, [np.array([0, 2, 2]), np.array([], dtype=np.int64)], 7, l2=3.0, weights=b)
    np.testing.assert_allclose(scores, np.stack([b[0] + b[2], np.zeros(7)]), atol=1e-6)  # a repeated item counts once


def test_recency_weighted_ease_weights_each_rating_by_its_age():
    """With ``decay`` the most recent rating weighs 1, the one before ``decay``, and so on; a
    movie rated twice adds both weights; ``decay = 1`` is the plain count."""
    from benchmarks.movielens.baselines import ease_scores, ease_weights, history_rows

    rng = np.random.default_rng(1)
    x = (rng.random((30, 6)) < 0.5).astype(float)
    users, items = np.nonzero(x)
    b = ease_weights(users, items, 6, l2=2.0)
    histories = [np.array([4, 1, 3]), np.array([2, 5, 2]), np.array([], dtype=np.int64)]
    rows = history_rows(histories, 6, decay=0.5).toarray()
    np.testing.assert_allclose(rows[0], [0, 0.5, 0, 1, 0.25, 0])
    np.testing.assert_allclose(rows[1], [0, 0, 1 + 0.25, 0, 0, 0.5])
    np.testing.assert_allclose(rows[2], np.zeros(6))
    np.testing.assert_allclose(
        ease_scores(users, items, histories, 6, 2.0, weights=b, decay=0.5), rows @ b, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        history_rows(histories[:1], 6, decay=1.0).toarray(), history_rows(histories[:1], 6).toarray()
    )
    with pytest.raises(ValueError, match="decay must lie in"):
        history_rows(histories, 6, decay=1.5)
