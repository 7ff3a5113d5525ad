"""Non-learned retrieval baselines and the top-k metrics for the MovieLens two-tower benchmark.

    pop = most_popular_scores(train_items, num_items)                        # (I,)
    knn = item_knn_scores(train_users, train_items, histories, num_items)    # (U, I)
    ease = ease_scores(train_users, train_items, histories, num_items, 500)  # (U, I)
    recent = ease_scores(train_users, train_items, histories, num_items, 500, decay=0.9)  # recency-weighted
    topk_metrics(knn, targets, exclude=seen, k=10)   # {'ndcg_at_10': ..., 'recall_at_10': ..., 'mrr': ...}

Everything works in item index space: items are ``0 .. num_items - 1`` (the caller maps
movie ids to indices) and users are any non-negative integers. numpy and scipy.sparse only,
so the metrics also score a two-tower model's (U, I) numpy scores.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

METRIC_CHUNK = 256  # query rows ranked at a time: bounds the (chunk, I) float64 copy
SIMILARITY_CHUNK = 2048  # item rows of the co-occurrence matrix built at a time


def _check_items(items: np.ndarray, num_items: int, what: str) -> np.ndarray:
    """``items`` as an int64 array of indices in ``[0, num_items)``.

    Raises:
        ValueError: for an index outside the range.
    """
    items = np.asarray(items, dtype=np.int64).reshape(-1)
    if items.size and (items.min() < 0 or items.max() >= num_items):
        raise ValueError(f"{what}: item indices must lie in [0, {num_items}), found {items.min()} .. {items.max()}")
    return items


def most_popular_scores(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """The number of train interactions of each item: (I,) float64.

    Raises:
        ValueError: for an item index outside ``[0, num_items)``.
    """
    items = _check_items(train_items, num_items, "train_items")
    return np.bincount(items, minlength=num_items).astype(np.float64)


def _top_k_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row (ties: the lower column index wins)."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))  # by row, then descending value, then column
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size) - m.indptr[rows[order]]  # position within its row
    keep = rank < k
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)


def item_similarity(
    train_users: np.ndarray, train_items: np.ndarray, num_items: int, k_neighbors: Optional[int] = None
) -> sp.csr_matrix:
    """Cosine item-item similarity from co-occurrence: (I, I) sparse float32.

    ``C[i, j]`` is the number of users who interacted with both i and j (i != j; repeated
    interactions of a user with an item count once), ``n_i`` the users of item i, and
    ``sim[i, j] = C[i, j] / sqrt(n_i * n_j)``. With ``k_neighbors`` each row keeps only its
    ``k_neighbors`` largest similarities (ties: lower item index).

    Raises:
        ValueError: for mismatched lengths, bad indices or ``k_neighbors < 1``.
    """
    users = np.asarray(train_users, dtype=np.int64).reshape(-1)
    items = _check_items(train_items, num_items, "train_items")
    if users.size != items.size:
        raise ValueError(f"train_users and train_items differ in length: {users.size} vs {items.size}")
    if k_neighbors is not None and k_neighbors < 1:
        raise ValueError(f"k_neighbors must be >= 1 or None, got {k_neighbors}")
    if users.size and users.min() < 0:
        raise ValueError("train_users must be non-negative")
    num_users = int(users.max()) + 1 if users.size else 0
    x = sp.csr_matrix((np.ones(users.size, dtype=np.float32), (users, items)), shape=(num_users, num_items))
    x.data[:] = 1.0  # duplicates were summed: a user counts once per item
    xt = x.T.tocsr()  # (I, users)
    n = np.asarray(xt.sum(axis=1)).reshape(-1)  # (I,) users per item
    inv_sqrt = np.divide(1.0, np.sqrt(n), out=np.zeros_like(n, dtype=np.float64), where=n > 0).astype(np.float32)
    blocks = []
    # Row blocks bound the memory of one product (and, with k_neighbors, of the result).
    for start in range(0, num_items, SIMILARITY_CHUNK):
        stop = min(start + SIMILARITY_CHUNK, num_items)
        block = (xt[start:stop] @ x).tocoo()  # (b, I) co-occurrence counts
        off_diagonal = block.row + start != block.col
        row, col = block.row[off_diagonal], block.col[off_diagonal]
        data = block.data[off_diagonal] * inv_sqrt[row + start] * inv_sqrt[col]
        block = sp.csr_matrix((data.astype(np.float32), (row, col)), shape=(stop - start, num_items))
        blocks.append(_top_k_per_row(block, k_neighbors) if k_neighbors is not None else block)
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, num_items), dtype=np.float32)


def item_knn_scores(
    train_users: np.ndarray,
    train_items: np.ndarray,
    query_histories: Sequence[np.ndarray],
    num_items: int,
    k_neighbors: Optional[int] = None,
) -> np.ndarray:
    """Item-KNN scores: for each query, ``score[j] = sum over its history items h of sim[h, j]``
    (see :func:`item_similarity`; an item repeated in a history counts each time): (U, I) float32.

    Args:
        train_users, train_items: the train interactions (user index, item index), same length.
        query_histories: per query, the item indices of its history (may be empty).
        num_items: I.
        k_neighbors: keep only each item's ``k_neighbors`` most similar items (None: all).

    Raises:
        ValueError: for mismatched lengths, bad indices or ``k_neighbors < 1``.
    """
    sim = item_similarity(train_users, train_items, num_items, k_neighbors)
    histories = [np.asarray(h, dtype=np.int64).reshape(-1) for h in query_histories]
    cols = _check_items(np.concatenate(histories) if histories else np.zeros(0), num_items, "query_histories")
    rows = np.repeat(np.arange(len(histories)), [h.size for h in histories])
    q = sp.csr_matrix((np.ones(cols.size, dtype=np.float32), (rows, cols)), shape=(len(histories), num_items))
    return np.asarray((q @ sim).todense(), dtype=np.float32)  # (U, I)


def ease_weights(train_users: np.ndarray, train_items: np.ndarray, num_items: int, l2: float) -> np.ndarray:
    """EASE (Steck 2019): the item-item weights ``B`` with a zero diagonal that best rebuild
    the user-item matrix ``X`` as ``X B`` under an L2 penalty ``l2``, in closed form:
    ``P = (X^T X + l2 I)^-1``, ``B = I - P diag(1 / diag(P))``. (I, I) float64.

    Raises:
        ValueError: for mismatched lengths, bad indices or ``l2 <= 0``.
    """
    users = np.asarray(train_users, dtype=np.int64).reshape(-1)
    items = _check_items(train_items, num_items, "train_items")
    if users.size != items.size or l2 <= 0:
        raise ValueError(f"need as many users as items ({users.size} vs {items.size}) and l2 > 0 (got {l2})")
    num_users = int(users.max()) + 1 if users.size else 0
    x = sp.csr_matrix((np.ones(users.size), (users, items)), shape=(num_users, num_items))
    x.data[:] = 1.0  # a user counts once per item
    gram = (x.T @ x).toarray()  # (I, I)
    gram[np.diag_indices(num_items)] += l2
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)  # column j divided by P_jj
    b[np.diag_indices(num_items)] = 0.0
    return b


def history_rows(query_histories: Sequence[np.ndarray], num_items: int, decay: Optional[float] = None) -> sp.csr_matrix:
    """The queries' histories as rows ``x_u`` of a ``(U, num_items)`` matrix: 1 for every movie
    in the history, or with ``decay`` the sum over its ratings of ``decay ** age``, ``age``
    counting the ratings after it (0 for the most recent; histories must then be in time order).

    Raises:
        ValueError: for bad indices or a decay outside (0, 1].
    """
    if decay is not None and not 0 < decay <= 1:
        raise ValueError(f"decay must lie in (0, 1], got {decay}")
    histories = [_check_items(h, num_items, "query_histories") for h in query_histories]
    cols = np.concatenate(histories) if histories else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(histories)), [h.size for h in histories])
    age = np.concatenate([np.arange(h.size)[::-1] for h in histories]) if histories else np.zeros(0)
    values = np.ones(cols.size) if decay is None else decay ** age.astype(np.float64)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(histories), num_items))  # repeated movies summed
    if decay is None:
        matrix.data[:] = 1.0  # a movie rated twice counts once
    return matrix


def ease_scores(
    train_users: np.ndarray,
    train_items: np.ndarray,
    query_histories: Sequence[np.ndarray],
    num_items: int,
    l2: float,
    weights: Optional[np.ndarray] = None,
    decay: Optional[float] = None,
) -> np.ndarray:
    """EASE scores of each query: ``score = x_u B`` with ``x_u`` the query's history as a 0/1
    row (:func:`ease_weights`; pass ``weights`` to reuse them): (U, I) float32. With ``decay``
    the history is weighted by recency (:func:`history_rows`; histories in time order)."""
    b = ease_weights(train_users, train_items, num_items, l2) if weights is None else weights
    return np.asarray(history_rows(query_histories, num_items, decay) @ b, dtype=np.float32)  # (U, I)


def topk_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    exclude: Optional[Sequence[np.ndarray]] = None,
    k: int = 10,
) -> dict:
    """Mean ``ndcg_at_k``, ``recall_at_k`` and ``mrr`` of one relevant item per query, from
    :func:`target_ranks` (same arguments).

    Raises:
        ValueError: for mismatched shapes, bad indices, ``k < 1`` or NaN scores.
    """
    import torch

    from deepsets.ranking import rank_metrics

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return rank_metrics(torch.from_numpy(target_ranks(scores, targets, exclude)), k)


def target_ranks(scores: np.ndarray, targets: np.ndarray, exclude: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    """Where each query's one relevant item ranks among all items: (U, 2) float64, the items
    scored above it and those tied with it (itself included), by
    :func:`deepsets.ranking.target_ranks` (the training pipeline's rule; its metrics are the
    expectation over every order of the ties, so a constant scorer gets the random-order value).

    Items in ``exclude[u]`` (the query's already-seen items) are left out of its ranking; the
    target itself never is, even if listed. Queries are ranked ``METRIC_CHUNK`` rows at a time.

    Args:
        scores: (U, I) float scores (numpy; higher is better).
        targets: (U,) the relevant item index of each query.
        exclude: None, or U arrays of item indices to exclude per query.

    Raises:
        ValueError: for mismatched shapes, bad indices or NaN scores.
    """
    import torch

    from deepsets.ranking import target_ranks as ranks_of

    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != targets.size or targets.size == 0:
        raise ValueError(f"scores must be (U, I) with U = len(targets) = {targets.size} > 0, got shape {scores.shape}")
    if exclude is not None and len(exclude) != targets.size:
        raise ValueError(f"exclude must hold one array per query ({targets.size}), got {len(exclude)}")
    num_queries, num_items = scores.shape
    _check_items(targets, num_items, "targets")
    ranks = []
    for start in range(0, num_queries, METRIC_CHUNK):
        stop = min(start + METRIC_CHUNK, num_queries)
        chunk = torch.from_numpy(np.ascontiguousarray(scores[start:stop], dtype=np.float64))  # (b, I)
        if torch.isnan(chunk).any():
            raise ValueError(f"NaN scores in query rows {start}..{stop - 1}")
        mask = None
        if exclude is not None:
            seen = [_check_items(exclude[u], num_items, "exclude") for u in range(start, stop)]
            mask = torch.zeros(chunk.shape, dtype=torch.bool)  # (b, I)
            mask[
                torch.from_numpy(np.repeat(np.arange(stop - start), [s.size for s in seen])),
                torch.from_numpy(np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64)),
            ] = True
        ranks.append(ranks_of(chunk, torch.from_numpy(targets[start:stop]), mask))
    return torch.cat(ranks).numpy()


__all__ = ["most_popular_scores", "item_similarity", "item_knn_scores", "target_ranks", "topk_metrics"]
