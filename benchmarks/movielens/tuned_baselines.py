"""The non-learned MovieLens baselines, each tuned on validation as the model is: item-kNN's
neighbourhood size, EASE's L2 penalty and recency-weighted EASE's decay.

    base = baselines(data, item_ids)   # per-query test metrics and the chosen settings
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.movielens.baselines import ease_scores, ease_weights, item_knn_scores, most_popular_scores, target_ranks
from benchmarks.movielens.ranking import K, per_query, queries

EASE_L2 = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
EASE_DECAY = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def choose_k_neighbors(data: Path, index: dict) -> int | None:
    """The item-kNN neighbourhood size with the best validation NDCG@10 (history: train split),
    so the baseline is tuned on validation as the model is."""
    users, targets, exclude, seen_users, seen_items = queries(data, "valid", ("train",), index)
    found = {}
    for k in (20, 50, 100, 200, None):
        ranks = target_ranks(
            item_knn_scores(seen_users, seen_items, exclude, len(index), k_neighbors=k), targets, exclude
        )
        found[k] = per_query(ranks)[f"ndcg_at_{K}"].mean()
    best = max(found, key=found.get)
    print(
        "item-kNN validation NDCG@10 by neighbours: "
        + ", ".join(f"{k or 'all'} {v:.4f}" for k, v in found.items())
        + f" -> {best or 'all'}",
        flush=True,
    )
    return best


def choose_ease(data: Path, index: dict) -> tuple[float, float]:
    """``(l2, decay)``: the EASE penalty with the best validation NDCG@10 (history: train split),
    then, with that penalty's weights, the recency weight of the history (``history_rows``, in
    time order) with the best validation NDCG@10 of recency-weighted EASE."""
    users, targets, exclude, seen_users, seen_items = queries(data, "valid", ("train",), index)
    ndcg = lambda scores: per_query(target_ranks(scores, targets, exclude))[f"ndcg_at_{K}"].mean()  # noqa: E731
    by_l2, l2, best_weights = {}, None, None
    for penalty in EASE_L2:
        weights = ease_weights(seen_users, seen_items, len(index), penalty)  # (I, I)
        by_l2[penalty] = ndcg(ease_scores(seen_users, seen_items, exclude, len(index), penalty, weights=weights))
        if l2 is None or by_l2[penalty] > by_l2[l2]:  # the first of equal scores, as max() picks
            l2, best_weights = penalty, weights
    print(
        "EASE validation NDCG@10 by L2: " + ", ".join(f"{k:g} {v:.4f}" for k, v in by_l2.items()) + f" -> {l2:g}",
        flush=True,
    )
    by_decay = {
        d: ndcg(ease_scores(seen_users, seen_items, exclude, len(index), l2, weights=best_weights, decay=d))
        for d in EASE_DECAY
    }
    decay = max(by_decay, key=by_decay.get)
    print(
        "recency-weighted EASE validation NDCG@10 by decay: "
        + ", ".join(f"{k:g} {v:.4f}" for k, v in by_decay.items())
        + f" -> {decay:g}",
        flush=True,
    )
    return l2, decay


def baselines(data: Path, item_ids: np.ndarray) -> dict:
    """Per-query test metrics of most-popular, item-kNN, EASE and recency-weighted EASE (each
    tuned on validation)."""
    index = {int(m): i for i, m in enumerate(item_ids)}
    users, targets, exclude, seen_users, seen_items = queries(data, "test", ("train", "valid"), index)
    k_neighbors, (l2, decay) = choose_k_neighbors(data, index), choose_ease(data, index)
    weights = ease_weights(seen_users, seen_items, len(item_ids), l2)
    scores = {
        "most_popular": np.broadcast_to(most_popular_scores(seen_items, len(item_ids)), (len(users), len(item_ids))),
        "item_knn": item_knn_scores(seen_users, seen_items, exclude, len(item_ids), k_neighbors=k_neighbors),
        "ease": ease_scores(seen_users, seen_items, exclude, len(item_ids), l2, weights=weights),
        "ease_recent": ease_scores(
            seen_users, seen_items, exclude, len(item_ids), l2, weights=weights, decay=decay
        ),  # exclude is in time order
    }
    _, valid_targets, valid_exclude, _, _ = queries(data, "valid", ("train",), index)
    return {
        "values": {name: per_query(target_ranks(s, targets, exclude)) for name, s in scores.items()},
        "settings": {"knn_neighbors": k_neighbors, "ease_l2": l2, "ease_decay": decay},
        "targets": targets,
        "exclude": exclude,
        "valid_queries": (valid_targets, valid_exclude),
    }
