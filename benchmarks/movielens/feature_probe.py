"""What the MovieLens EASE features score on their own, before any training: a probe of how
much a two-tower model gets handed (``benchmarks/movielens/ease.py``).

    python -m benchmarks.movielens.feature_probe [--work .cache/movielens]

Each query feature (``ease_profile``, ``ease_recent``) is scored against every movie's
``ease_item`` by its plain dot product (the projected EASE score) and by cosine similarity
(what a unit-length two-tower embedding keeps), on the validation and test rows, with the
users' earlier movies left out as in ``benchmarks.movielens.benchmark``. Reported: NDCG@10 and, on
test, the ratio to EASE (its L2 penalty chosen on validation, fitted on train + valid) and the
95% paired bootstrap interval of the lead. Reads the features ``benchmarks.movielens.benchmark`` wrote
(run it first); takes seconds. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.movielens.baselines import ease_scores
from benchmarks.movielens.blend import SPLITS, ndcg
from benchmarks.movielens.ease import ITEM_MODALITY, QUERY_MODALITY, RECENT_MODALITY, has_recent, two_tower_data
from benchmarks.movielens.ranking import K, lead_interval, queries
from benchmarks.movielens.tuned_baselines import choose_ease


def vectors(table, column: str) -> np.ndarray:
    """A fixed-size list column as an (N, D) float64 array."""
    return np.stack(table[column].to_numpy(zero_copy_only=False)).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", default=".cache/movielens", help="the benchmark's work folder (default .cache/movielens)"
    )
    args = parser.parse_args()
    data = two_tower_data(Path(args.work).absolute())
    if not (data / "ease.txt").exists():
        raise SystemExit(f"no EASE features under {args.work}: run python -m benchmarks.movielens.benchmark first")
    items = pq.read_table(data / "items.parquet")
    item_ids = items["movie_id"].to_numpy()
    index = {int(m): i for i, m in enumerate(item_ids)}
    item_vectors = vectors(items, ITEM_MODALITY)  # (I, R)
    unit_items = item_vectors / np.maximum(np.linalg.norm(item_vectors, axis=1, keepdims=True), 1e-12)  # (I, R)
    features = [QUERY_MODALITY, *([RECENT_MODALITY] if has_recent(data) else [])]
    l2, _ = choose_ease(data, index)
    report, ease_test = {}, None
    for split, before in SPLITS.items():
        _, targets, exclude, seen_users, seen_items = queries(data, split, before, index)
        if split == "test":
            ease_test = ndcg(ease_scores(seen_users, seen_items, exclude, len(item_ids), l2), targets, exclude)
        rows = pq.read_table(data / f"{split}.parquet").sort_by("event_id")  # the order of queries()
        for feature in features:
            query = vectors(rows, feature)  # (Q, R)
            for score, items_side in (("dot", item_vectors), ("cosine", unit_items)):
                values = ndcg(query @ items_side.T, targets, exclude)  # (Q,)
                entry = report.setdefault(f"{feature}_{score}", {})
                entry[split] = round(float(values.mean()), 4)
                if split == "test":
                    entry["ratio_to_ease"] = round(float(values.mean() / ease_test.mean()), 3)
                    entry["lead_95ci"] = lead_interval(values, ease_test)
    report["ease_test"] = round(float(ease_test.mean()), 4)
    for name, entry in report.items():
        if isinstance(entry, dict):
            print(
                f"{name:<22} valid NDCG@{K} {entry['valid']:.4f}  test {entry['test']:.4f} = {entry['ratio_to_ease']:.3f}x EASE "
                f"({report['ease_test']:.4f}), lead 95% CI {entry['lead_95ci']}"
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
