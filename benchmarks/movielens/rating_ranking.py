"""MovieLens rating ranking: listwise and pairwise models rank each held-out user's rated
movies, against each movie's mean rating and a random order (NDCG@10, paired bootstrap lead).

    found = rating_ranking(data, work, epochs=5, workers=1, seeds=[0, 1, 2])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.movielens.ranking import K, lead_interval
from benchmarks.movielens.trained_runs import run_config, train_or_reuse


def rating_split(data: Path) -> tuple[str, str]:
    """Train-split ratings of 4/5 of the users (training) and of the rest (validation)."""
    out = data / "rating_ranking"
    out.mkdir(exist_ok=True)
    table = pq.read_table(data / "train.parquet")
    held = table["user_id"].to_numpy() % 5 == 0
    pq.write_table(table.filter(pa.array(~held)), out / "train.parquet")
    pq.write_table(table.filter(pa.array(held)), out / "valid.parquet")
    return str(out / "train.parquet"), str(out / "valid.parquet")


def group_ndcg(scores, rows: pa.Table):
    """NDCG@K of each user's rows ordered by ``scores``: (G,) in ascending user order."""
    import torch

    from deepsets.ranking import ndcg_at_k, pad_groups

    padded, labels, mask = pad_groups(
        torch.tensor(np.asarray(scores, dtype=np.float64)),
        torch.tensor(rows["rating"].to_numpy()),
        torch.tensor(rows["user_id"].to_numpy()),
    )
    return ndcg_at_k(padded, labels, mask, K)


def model_scores(model_uri: str, path: str) -> np.ndarray:
    """A ranking model's score of every row of ``path``, in file order."""
    from deepsets.features.reader import ParquetBatchReader
    from deepsets.inference import collect_outputs
    from deepsets.pipelines.models.source import load_model_source

    source = load_model_source(model_uri)
    reader = ParquetBatchReader(source.spec, path, batch_size=4096)
    return collect_outputs(source.build(), reader, ("logits",))["logits"][:, 0].double().numpy()


def rating_ranking(
    data: Path, work: Path, epochs: int, workers: int, seeds, kinds=("listwise", "pairwise"), reuse: bool = False
) -> dict:
    """listwise and pairwise models ranking each held-out user's movies by rating, over
    ``seeds``; the mean-rating and random baselines; the better ranker's paired lead."""
    train, valid = rating_split(data)
    rows = pq.read_table(valid, columns=["user_id", "movie_id", "rating"])
    section = {"train": train, "valid": valid, "label_columns": ["rating"], "group_column": "user_id"}
    per_group = {}
    for kind in kinds:
        found = []
        for seed in seeds:
            cfg = run_config(data, work, f"{kind}-s{seed}-e{epochs}", {"kind": kind}, section, epochs, workers, seed)
            trained = train_or_reuse(cfg, reuse)
            found.append(group_ndcg(model_scores(trained["model_uri"], valid), rows).numpy())
            # every rated movie is relevant here (ratings >= 0.5), so only NDCG (graded) says anything
            print(
                f"{kind} seed {seed} trained in {trained['seconds']} s, kept epoch {trained['selected']['epoch']}: "
                f"valid ndcg@{K} {found[-1].mean():.4f}",
                flush=True,
            )
        per_group[kind] = found
    means = pq.read_table(train, columns=["movie_id", "rating"]).group_by("movie_id").aggregate([("rating", "mean")])
    mean_of = dict(zip(means["movie_id"].to_pylist(), means["rating_mean"].to_pylist()))
    overall = float(pc.mean(pq.read_table(train, columns=["rating"])["rating"]).as_py())
    baseline = {
        "movie_mean_rating": group_ndcg([mean_of.get(m, overall) for m in rows["movie_id"].to_pylist()], rows).numpy(),
        "random": group_ndcg(np.random.default_rng(0).random(rows.num_rows), rows).numpy(),
    }
    out = {
        kind: {
            f"ndcg_at_{K}": round(float(np.mean([v.mean() for v in values])), 4),
            "std": round(float(np.std([v.mean() for v in values], ddof=1)), 4) if len(values) > 1 else 0.0,
        }
        for kind, values in per_group.items()
    }
    out.update({name: {f"ndcg_at_{K}": round(float(v.mean()), 4)} for name, v in baseline.items()})
    better = max(per_group, key=lambda kind: out[kind][f"ndcg_at_{K}"])
    out["better_ranker"] = better
    out["lead_over_mean_rating_95ci"] = lead_interval(np.mean(per_group[better], axis=0), baseline["movie_mean_rating"])
    out["groups"] = int(len(baseline["random"]))
    return out
