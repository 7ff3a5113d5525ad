"""The MovieLens two-tower retrieval benchmark: train with each candidate negatives on the first
seed, keep the best on validation, train it with the other seeds, index every movie with
``deepsets embed`` and rank each test user's held-out movie against the tuned baselines.

    found = retrieval(data, work, epochs=5, workers=1, seeds=[0, 1, 2], candidates=list(NEGATIVES))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.movielens.baselines import target_ranks
from benchmarks.movielens.dataset import ITEM_MODALITIES, QUERY_MODALITIES
from benchmarks.movielens.ease import (
    ITEM_MODALITY,
    QUERY_MODALITY,
    RANK,
    RECENT_MODALITY,
    ease_folder,
    two_tower_run,
    write_ease_features,
)
from benchmarks.movielens.ranking import K, embed_side, lead_interval, per_query
from benchmarks.movielens.retrieve import seen_pairs, through_retrieve
from benchmarks.movielens.trained_runs import log_metrics_to_run, run_config, train_or_reuse
from benchmarks.movielens.tuned_baselines import baselines

GOAL_BASELINES = ("most_popular", "item_knn", "ease")
"""The baselines the retrieval goal (1.2x the best of them) is measured against; ``ease_recent`` is reported beside them."""
NEGATIVES = {
    "in_batch": {"negatives": "in_batch"},
    "mixed": {"negatives": "mixed", "num_negatives": 1024},
    "catalogue": {"negatives": "catalogue", "refresh_steps": 1},
    "catalogue_refresh10": {"negatives": "catalogue", "refresh_steps": 10},
}
"""The two-tower negatives tried with the first seed; the one with the best validation NDCG@10
(each validation user's movie ranked among all movies) is trained with the other seeds."""


def two_tower(
    data: Path,
    work: Path,
    epochs: int,
    workers: int,
    seed: int,
    base: dict,
    item_ids: np.ndarray,
    negatives: str,
    reuse: bool = False,
    ease: bool = False,
    dim: int = 64,
    ease_rank: int = RANK,
    recent: bool = False,
    shortcut: bool = False,
) -> dict:
    """Train the two-tower model with ``NEGATIVES[negatives]`` (or ``reuse`` a finished run),
    index every movie with ``deepsets embed``, rank each validation and test user's movie among
    all movies: per-query test metrics and the mean validation ones. With ``ease``, ``data``
    holds the EASE features (``benchmarks/movielens/ease.py``, of rank ``ease_rank``) and each
    tower takes its side, the query tower with ``recent`` also ``ease_recent`` (with ``shortcut``
    paired with ``ease_item`` as a two-tower shortcut, ``task.shortcuts``); ``dim`` is the
    model width."""
    towers = {
        "query_modalities": [
            *QUERY_MODALITIES,
            *([QUERY_MODALITY] if ease else []),
            *([RECENT_MODALITY] if ease and recent else []),
        ],
        "item_modalities": [*ITEM_MODALITIES, *([ITEM_MODALITY] if ease else [])],
    }
    shortcuts = [[RECENT_MODALITY, ITEM_MODALITY]] if ease and recent and shortcut else []
    task = {"kind": "two_tower", **towers, **NEGATIVES[negatives], **({"shortcuts": shortcuts} if shortcuts else {})}
    data_section = {
        "train": str(data / "train.parquet"),
        "valid": str(data / "valid.parquet"),
        "item_column": "movie_id",
        **({"items": str(data / "items.parquet")} if negatives != "in_batch" else {}),
    }
    cfg = run_config(
        data,
        work,
        two_tower_run(negatives, seed, epochs, ease, dim, ease_rank, recent, bool(shortcuts)),
        task,
        data_section,
        epochs,
        workers,
        seed,
        dim,
    )
    trained = train_or_reuse(cfg, reuse)
    indexed, item_vectors = embed_side(
        trained["model_uri"], str(data / "items.parquet"), work / "index" / "items", "item"
    )  # (I,), (I, D)
    if not np.array_equal(indexed, item_ids):
        raise RuntimeError("the item embeddings do not cover the items one to one")
    ranked = {}
    for split, targets, exclude in (("valid", *base["valid_queries"]), ("test", base["targets"], base["exclude"])):
        events, query_vectors = embed_side(
            trained["model_uri"], str(data / f"{split}.parquet"), work / "index" / split, "query"
        )
        expected = (
            pq.read_table(data / f"{split}.parquet", columns=["event_id"]).sort_by("event_id")["event_id"].to_numpy()
        )
        if not np.array_equal(expected, events):
            raise RuntimeError(f"the query embeddings do not cover the {split} rows one to one")
        ranked[split] = per_query(
            target_ranks(query_vectors @ item_vectors.T, targets, exclude)
        )  # (U, I) cosine similarities
    valid = {m: round(float(v.mean()), 4) for m, v in ranked["valid"].items()}
    test = {m: round(float(v.mean()), 4) for m, v in ranked["test"].items()}
    retrieved = through_retrieve(work, "test", *seen_pairs(data, "test"))  # the same figures by `deepsets retrieve`
    if any(abs(retrieved[m] - float(ranked["test"][m].mean())) > 1e-9 for m in (f"ndcg_at_{K}", f"recall_at_{K}")):
        raise RuntimeError(f"deepsets retrieve gives {retrieved}, the brute-force ranking {test}")
    print(
        f"two-tower {negatives}{' with EASE features' if ease else ''}{' and recency' if ease and recent else ''}{' (shortcut)' if shortcuts else ''} seed {seed} trained in {trained['seconds']} s, kept epoch {trained['selected']['epoch']}: "
        f"over all movies, valid NDCG@{K} {valid[f'ndcg_at_{K}']:.4f}; test "
        + ", ".join(f"{m} {v:.4f}" for m, v in test.items()),
        flush=True,
    )
    log_metrics_to_run(trained, {f"test_two_tower_{m}": float(v.mean()) for m, v in ranked["test"].items()})
    return {
        "values": ranked["test"],
        "train_seconds": trained["seconds"],
        "epoch": trained["selected"]["epoch"],
        "valid": valid,
        "model_uri": trained["model_uri"],
    }


def retrieval(
    data: Path,
    work: Path,
    epochs: int,
    workers: int,
    seeds,
    candidates,
    reuse: bool = False,
    ease: bool = True,
    dim: int = 64,
    ease_rank: int = RANK,
    recent: bool = True,
    shortcut: bool = True,
) -> dict:
    """The two-tower model over ``seeds`` against the baselines, on the test users; the
    negatives chosen among ``candidates`` on validation with the first seed. With ``ease``, the
    towers also get EASE's projected sides (on ``ease_rank`` dimensions), fitted with the
    penalty EASE chose on validation, and with ``recent`` the query tower the recency-weighted
    history's side too (the decay recency-weighted EASE chose on validation), with ``shortcut``
    also as a two-tower shortcut; ``dim`` is the model width. The goal's best baseline is the best of ``GOAL_BASELINES``; the lead over
    ``ease_recent`` is reported beside it."""
    item_ids = pq.read_table(data / "items.parquet", columns=["movie_id"])["movie_id"].to_numpy()
    base = baselines(data, item_ids)
    if ease:
        decay = base["settings"]["ease_decay"] if recent else None
        print(
            f"writing the EASE features (L2 {base['settings']['ease_l2']:g}, rank {ease_rank}, recency decay {decay}, about 3 minutes)",
            flush=True,
        )
        data = write_ease_features(
            data, ease_folder(work, ease_rank, recent), base["settings"]["ease_l2"], rank=ease_rank, decay=decay
        )

    def train(seed, name):
        return two_tower(
            data, work, epochs, workers, seed, base, item_ids, name, reuse, ease, dim, ease_rank, recent, shortcut
        )

    tried = {name: train(seeds[0], name) for name in candidates}
    chosen = max(tried, key=lambda name: tried[name]["valid"][f"ndcg_at_{K}"])
    print(f"negatives chosen on validation: {chosen}", flush=True)
    runs = [tried[chosen]] + [train(seed, chosen) for seed in seeds[1:]]
    table = {name: {m: round(float(v.mean()), 4) for m, v in values.items()} for name, values in base["values"].items()}
    for m in runs[0]["values"]:
        per_seed = [float(r["values"][m].mean()) for r in runs]
        table.setdefault("two_tower", {})[m] = round(float(np.mean(per_seed)), 4)
        table.setdefault("two_tower_std", {})[m] = round(float(np.std(per_seed, ddof=1)), 4) if len(runs) > 1 else 0.0
    averaged = {m: np.mean([r["values"][m] for r in runs], axis=0) for m in runs[0]["values"]}  # per query, over seeds
    best = max(GOAL_BASELINES, key=lambda name: table[name][f"ndcg_at_{K}"])
    leads = {m: lead_interval(averaged[m], base["values"][best][m]) for m in (f"ndcg_at_{K}", f"recall_at_{K}")}
    over_recent = {
        "lead_95ci": lead_interval(averaged[f"ndcg_at_{K}"], base["values"]["ease_recent"][f"ndcg_at_{K}"]),
        "ratio": round(table["two_tower"][f"ndcg_at_{K}"] / table["ease_recent"][f"ndcg_at_{K}"], 3),
    }
    negatives = {
        name: {
            "valid": r["valid"],
            "train_seconds": r["train_seconds"],
            "epoch": r["epoch"],
            "test": {m: round(float(v.mean()), 4) for m, v in r["values"].items()},
        }
        for name, r in tried.items()
    }
    return {
        "queries": int(len(base["targets"])),
        "items": int(len(item_ids)),
        "ease_features": ease,
        "recency_feature": ease and recent,
        "shortcut": ease and recent and shortcut,
        "dim": dim,
        **({"ease_rank": ease_rank} if ease else {}),
        "metrics": table,
        "best_baseline": best,
        "negatives": {"chosen": chosen, "settings": NEGATIVES[chosen], "tried_with_first_seed": negatives},
        "lead_over_best_95ci": leads,
        "ratio_over_best": round(table["two_tower"][f"ndcg_at_{K}"] / table[best][f"ndcg_at_{K}"], 3),
        "over_ease_recent_ndcg": over_recent,
        "per_seed": [
            {
                "seed": s,
                "epoch": r["epoch"],
                "valid": r["valid"],
                "train_seconds": r["train_seconds"],
                **{m: round(float(v.mean()), 4) for m, v in r["values"].items()},
            }
            for s, r in zip(seeds, runs)
        ],
        **base["settings"],
    }
