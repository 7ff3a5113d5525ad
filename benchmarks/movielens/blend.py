"""What EASE's own score and seed averaging add to the MovieLens two-tower models that
``python -m benchmarks.movielens.benchmark`` trained: a probe for the retrieval goal (1.2x EASE), and
whether the towers add anything to recency-weighted EASE.

    python -m benchmarks.movielens.blend [--work .cache/movielens] [--negatives in_batch] [--epochs 5]

For each seed's model, both towers embed the validation and test rows and the catalogue
(``deepsets embed``); each query's scores over the unseen movies are standardized, and so are
EASE's (its L2 penalty chosen on validation, fitted on train for validation queries and on
train + valid for test queries, as the benchmark's baseline), and so are recency-weighted
EASE's (``ease_recent``: the history weighted by ``decay ** age``, the decay chosen on
validation). Reported, on test:

- ``blend``: ``(1 - w) * tower + w * EASE`` with ``w`` chosen on validation (mean over seeds);
- ``blend_recent``: the same with ``ease_recent``, and ``ease_recent`` alone: what the towers
  add to it;
- ``ensemble``: the seeds' tower scores summed (one model made of all seeds);
- each one's ratio to EASE and the 95% paired bootstrap interval of its lead, and the lead the
  tower alone would need for that interval to clear 0 (``needed_lead``: the interval's
  half-width, so ``EASE + needed_lead`` is the NDCG@10 to reach at this test size).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.movielens.ablate import checkpoints
from benchmarks.movielens.baselines import ease_scores, ease_weights, target_ranks
from benchmarks.movielens.ease import two_tower_data
from benchmarks.movielens.ranking import K, embed_side, lead_interval, per_query, queries
from benchmarks.movielens.tuned_baselines import choose_ease

WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
SPLITS = {"valid": ("train",), "test": ("train", "valid")}


def standardized(scores: np.ndarray, exclude) -> np.ndarray:
    """Each row of ``scores`` (Q, I) as z-scores over its unseen items; seen items at -1e9
    (finite, so a blend weight of 0 or 1 leaves no NaN; the ranking excludes them anyway)."""
    out = scores.astype(np.float64)  # (Q, I)
    seen = np.zeros(out.shape, dtype=bool)
    for row, items in enumerate(exclude):
        seen[row, items] = True
    unseen = np.ma.masked_array(out, seen)
    out = ((unseen - unseen.mean(axis=1, keepdims=True)) / (unseen.std(axis=1, keepdims=True) + 1e-12)).filled(-1e9)
    return out


def ndcg(scores: np.ndarray, targets: np.ndarray, exclude) -> np.ndarray:
    """Per-query NDCG@K (Q,) of the held-out movie."""
    return per_query(target_ranks(scores, targets, exclude))[f"ndcg_at_{K}"]


def tower_scores(checkpoint: Path, data: Path, scratch: Path) -> dict:
    """split -> (Q, I) cosine similarities of one model's query and item embeddings."""
    _, items = embed_side(str(checkpoint), str(data / "items.parquet"), scratch / "items", "item")  # (I, D)
    return {
        split: embed_side(str(checkpoint), str(data / f"{split}.parquet"), scratch / split, "query")[1] @ items.T
        for split in SPLITS
    }


def summary(values: np.ndarray, ease: np.ndarray) -> dict:
    """Mean NDCG@10 of per-query ``values`` (Q,), its ratio to EASE's and its paired lead interval."""
    return {
        "ndcg_at_10": round(float(values.mean()), 4),
        "ratio_to_ease": round(float(values.mean() / ease.mean()), 3),
        "lead_95ci": lead_interval(values, ease),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", default=".cache/movielens", help="the benchmark's work folder (default .cache/movielens)"
    )
    parser.add_argument(
        "--negatives", default="in_batch", help="which trained two-tower runs to read (default in_batch)"
    )
    parser.add_argument("--epochs", type=int, default=5, help="their epochs (default 5)")
    parser.add_argument(
        "--no-shortcut",
        action="store_true",
        help="the runs trained without the shortcut (benchmarks.movielens.benchmark --no-shortcut)",
    )
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    work = Path(args.work).absolute()
    data = two_tower_data(work)
    found = checkpoints(work, args.negatives, args.epochs, not args.no_shortcut)
    item_ids = pq.read_table(data / "items.parquet", columns=["movie_id"])["movie_id"].to_numpy()
    index = {int(m): i for i, m in enumerate(item_ids)}
    l2, decay = choose_ease(data, index)
    truth, partners = {}, {"ease": {}, "ease_recent": {}}
    for split, before in SPLITS.items():
        _, targets, exclude, seen_users, seen_items = queries(data, split, before, index)
        truth[split] = (targets, exclude)
        weights = ease_weights(seen_users, seen_items, len(item_ids), l2)
        for name, d in (("ease", None), ("ease_recent", decay)):
            scores = ease_scores(seen_users, seen_items, exclude, len(item_ids), l2, weights=weights, decay=d)  # (Q, I)
            partners[name][split] = standardized(scores, exclude)
    with tempfile.TemporaryDirectory() as scratch:
        towers = {
            seed: {
                split: standardized(s, truth[split][1]) for split, s in tower_scores(ckpt, data, Path(scratch)).items()
            }
            for seed, ckpt in sorted(found.items())
        }
    ease_test = ndcg(partners["ease"]["test"], *truth["test"])
    recent_test = ndcg(partners["ease_recent"]["test"], *truth["test"])
    tower_alone = np.mean([ndcg(towers[s]["test"], *truth["test"]) for s in towers], axis=0)  # (Q,) over seeds
    ensemble = ndcg(sum(t["test"] for t in towers.values()), *truth["test"])
    alone = summary(tower_alone, ease_test)
    report = {
        "seeds": sorted(towers),
        "ease_l2": l2,
        "ease_decay": decay,
        "ease": round(float(ease_test.mean()), 4),
        "ease_recent": round(float(recent_test.mean()), 4),
        "queries": int(ease_test.size),
        "tower": alone,
        "tower_over_ease_recent": summary(tower_alone, recent_test),
        "ensemble": summary(ensemble, ease_test),
        "needed_lead": round((alone["lead_95ci"][1] - alone["lead_95ci"][0]) / 2, 4),
    }
    for name, partner in partners.items():
        by_weight = {
            w: {
                split: [ndcg((1 - w) * towers[s][split] + w * partner[split], *truth[split]) for s in towers]
                for split in SPLITS
            }
            for w in WEIGHTS
        }
        for w, found_w in by_weight.items():
            print(
                f"{name} w {w:<4} valid NDCG@{K} "
                + " ".join(f"{v.mean():.4f}" for v in found_w["valid"])
                + "  test "
                + " ".join(f"{v.mean():.4f}" for v in found_w["test"]),
                flush=True,
            )
        chosen = max(WEIGHTS, key=lambda w: np.mean([v.mean() for v in by_weight[w]["valid"]]))
        blended = np.mean(by_weight[chosen]["test"], axis=0)  # (Q,) over seeds
        key = "blend" if name == "ease" else "blend_recent"
        report[key] = {"weight": chosen, **summary(blended, ease_test)}
        if name == "ease_recent":
            report[key]["over_ease_recent"] = summary(blended, recent_test)
    for name in ("tower", "blend", "blend_recent", "ensemble"):
        r = report[name]
        print(
            f"{name:<12} test NDCG@{K} {r['ndcg_at_10']:.4f} = {r['ratio_to_ease']:.3f}x EASE ({report['ease']:.4f}), lead 95% CI {r['lead_95ci']}"
            + (f" (w = {r['weight']} on validation)" if "weight" in r else "")
        )
    for name, r in (
        ("tower", report["tower_over_ease_recent"]),
        ("blend_recent", report["blend_recent"]["over_ease_recent"]),
    ):
        print(
            f"{name:<12} over recency-weighted EASE ({report['ease_recent']:.4f}, decay {decay:g}): {r['ratio_to_ease']:.3f}x, lead 95% CI {r['lead_95ci']}"
        )
    print(
        f"at {report['queries']} test queries the tower's lead interval is +-{report['needed_lead']}: clearing 0 takes NDCG@{K} "
        f"{report['ease'] + report['needed_lead']:.4f} ({(report['ease'] + report['needed_lead']) / report['ease']:.2f}x EASE)"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
