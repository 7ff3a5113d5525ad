"""The MovieLens two-tower test figures through ``deepsets retrieve``, next to the brute-force
ranking ``benchmarks.movielens.benchmark`` computes them with, on the same embed outputs.

    python -m benchmarks.movielens.retrieve [--work .cache/movielens] [--split test]

Reads ``<work>/index/items`` and ``<work>/index/<split>`` (the item and query embeddings the
last two-tower model of ``python -m benchmarks.movielens.benchmark`` wrote with ``deepsets embed``), asks
``deepsets retrieve`` for the top 10 movies of every query with the user's earlier movies
excluded, and scores NDCG@10 / Recall@10 of the held-out movie from that list. The brute-force
side scores every movie (``query @ items.T``) and ranks the held-out one among the unseen.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.movielens.baselines import target_ranks
from benchmarks.movielens.ease import two_tower_data
from benchmarks.movielens.ranking import K, per_query, queries, read_side


def seen_pairs(data: Path, split: str) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """(query event id, movie id) pairs to exclude for each ``split`` row: the user's movies in
    the earlier splits, the held-out movie itself never; and the rows' event and target ids."""
    before = ("train",) if split == "valid" else ("train", "valid")
    history = pa.concat_tables([pq.read_table(data / f"{s}.parquet", columns=["user_id", "movie_id"]) for s in before])
    rows = pq.read_table(data / f"{split}.parquet", columns=["event_id", "user_id", "movie_id"]).sort_by("event_id")
    joined = rows.rename_columns(["event_id", "user_id", "target"]).join(history, "user_id")
    joined = joined.filter(pc.not_equal(joined["movie_id"], joined["target"]))
    pairs = pa.table({"query_event": joined["event_id"], "movie_id": joined["movie_id"]})
    return pairs, rows["event_id"].to_numpy(), rows["movie_id"].to_numpy()


def through_retrieve(work: Path, split: str, pairs: pa.Table, events: np.ndarray, targets: np.ndarray) -> dict:
    """Mean NDCG@10 and Recall@10 of the held-out movie in ``deepsets retrieve``'s top 10."""
    from deepsets.pipelines.retrieval.job import parse_retrieve_config, run_retrieve

    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pairs, Path(tmp) / "seen.parquet")
        summary = run_retrieve(
            parse_retrieve_config(
                items=str(work / "index" / "items"),
                queries=str(work / "index" / split),
                k=K,
                out=str(Path(tmp) / "top"),
                exclude=str(Path(tmp) / "seen.parquet"),
                exclude_columns="query_event,movie_id",
            ),
            progress=False,
        )
        top = pq.read_table(sorted((Path(tmp) / "top").glob("part-*.parquet"))).to_pydict()
    target_of = dict(zip(events.tolist(), targets.tolist()))
    rank = {}
    for event, position, item in zip(top["event_id"], top["rank"], top["item_event_id"]):
        if item == target_of[event]:
            rank[event] = position
    ndcg = [1.0 / np.log2(rank[e] + 1) if e in rank else 0.0 for e in events.tolist()]
    return {
        "ndcg_at_10": float(np.mean(ndcg)),
        "recall_at_10": len(rank) / len(events),
        "queries": summary["queries_out"],
        "seconds": summary["seconds"],
        "excluded_pairs": summary["exclusions"]["pairs"],
    }


def brute_force(work: Path, data: Path, split: str) -> dict:
    """The same metrics as ``benchmarks.movielens.two_tower.two_tower`` computes them."""
    item_ids, item_vectors = read_side(work / "index" / "items")
    index = {int(m): i for i, m in enumerate(item_ids)}
    before = ("train",) if split == "valid" else ("train", "valid")
    _, targets, exclude, _, _ = queries(data, split, before, index)
    _, query_vectors = read_side(work / "index" / split)
    values = per_query(target_ranks(query_vectors @ item_vectors.T, targets, exclude))
    return {
        f"ndcg_at_{K}": float(values[f"ndcg_at_{K}"].mean()),
        f"recall_at_{K}": float(values[f"recall_at_{K}"].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", default=".cache/movielens", help="the --work folder of benchmarks.movielens.benchmark"
    )
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    args = parser.parse_args()
    work = Path(args.work)
    data = two_tower_data(work)  # the folder the two-tower models were trained on
    pairs, events, targets = seen_pairs(data, args.split)
    retrieved = through_retrieve(work, args.split, pairs, events, targets)
    brute = brute_force(work, data, args.split)
    print(f"{args.split}: {retrieved['queries']} queries, {retrieved['excluded_pairs']} seen pairs excluded")
    print(f"{'':<22} {'NDCG@10':>8} {'Recall@10':>10}")
    print(
        f"{'deepsets retrieve':<22} {retrieved['ndcg_at_10']:>8.4f} {retrieved['recall_at_10']:>10.4f}   ({retrieved['seconds']} s)"
    )
    print(f"{'brute force (numpy)':<22} {brute['ndcg_at_10']:>8.4f} {brute['recall_at_10']:>10.4f}")
    same = (
        abs(retrieved["ndcg_at_10"] - brute["ndcg_at_10"]) < 1e-6
        and abs(retrieved["recall_at_10"] - brute["recall_at_10"]) < 1e-6
    )
    print(json.dumps({"split": args.split, "retrieve": retrieved, "brute_force": brute, "same": same}))


if __name__ == "__main__":
    main()
