"""Top-k retrieval as ``deepsets retrieve`` does it (FAISS) against numpy brute force, side by
side in one run: exact search speed and agreement, and the approximate indexes' recall@k
against exact search and their speed.

    python -m benchmarks.speed.retrieve --quick    # 20k items x 2k queries; the full run: 100k x 10k

Items and queries are unit vectors drawn around 200 clusters (embeddings are unit length and
clustered, as a model writes them), D = 64, k = 100. Each search is timed best of 3 (index
builds once, timed apart); the approximate indexes are first widened as the command widens them
(recall@100 >= 0.95 against exact search on the first 1,000 queries), then their recall is
measured on all queries. Then the whole command runs on the same vectors written as embed
outputs. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.speed.timing import best_seconds
from deepsets.pipelines.embedding.writer import fixed_list
from deepsets.pipelines.retrieval.index import build_index, search, tune_to_recall

K, DIM = 100, 64


def unit_vectors(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """``n`` unit vectors near random centres: (n, D) float32."""
    vectors = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, centres.shape[1]))  # (n, D)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def embed_output(
    folder: Path,
    id_column: str,
    ids,
    vectors: np.ndarray,
    tower: str,
    weights: str = "w" * 64,
    rows_per_part: int = 0,
    finished: bool = True,
) -> Path:
    """A folder laid out as `deepsets embed --tower <tower>` writes it."""
    (folder / "embeddings").mkdir(parents=True)
    n = len(ids)
    step = rows_per_part or max(n, 1)
    for number, start in enumerate(range(0, max(n, 1), step)):
        stop = min(n, start + step)
        pq.write_table(
            pa.table(
                {
                    "source_file": pa.array(["in.parquet"] * (stop - start)),
                    "source_row": pa.array(np.arange(start, stop)),
                    id_column: pa.array(ids[start:stop]),
                    "embedding": fixed_list(vectors[start:stop]),
                }
            ),
            folder / "embeddings" / f"part-{number:05d}.parquet",
        )
    (folder / "_manifest.json").write_text(json.dumps({"tower": tower, "weights_sha256": weights}))
    if finished:
        (folder / "_SUCCESS.json").write_text("{}")
    return folder


def numpy_top_k(items: np.ndarray, queries: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: every score, then the k best per query, best first."""
    scores_out, ids_out = [], []
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ items.T  # (q, N)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (q, k), unordered
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ids_out.append(np.take_along_axis(top, order, axis=1))
        scores_out.append(np.take_along_axis(top_scores, order, axis=1))
    return np.concatenate(scores_out), np.concatenate(ids_out)


def same_top_k(a_ids, a_scores, b_ids, b_scores, tol: float = 1e-5) -> tuple[bool, int]:
    """Whether two top-k lists agree per query, ties aside (a differing id must sit at a score
    both lists share within ``tol``); returns (agree, queries whose id lists differ at all)."""
    differ = int((np.sort(a_ids, axis=1) != np.sort(b_ids, axis=1)).any(axis=1).sum())
    scores_agree = bool(np.allclose(a_scores, b_scores, atol=tol))
    return scores_agree, differ


def command_seconds(items: np.ndarray, queries: np.ndarray, index: str) -> tuple[float, dict]:
    """``deepsets retrieve`` end to end on the vectors written as two embed outputs."""
    from deepsets.pipelines.retrieval.job import parse_retrieve_config, run_retrieve

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        embed_output(tmp / "items", "item_id", np.arange(len(items)), items, "item")
        embed_output(
            tmp / "queries",
            "user_id",
            np.arange(len(queries)),
            queries,
            "query",
            rows_per_part=max(1, len(queries) // 4),
        )
        start = time.perf_counter()
        summary = run_retrieve(
            parse_retrieve_config(
                items=str(tmp / "items"), queries=str(tmp / "queries"), k=K, out=str(tmp / "out"), index=index
            ),
            progress=False,
        )
        return time.perf_counter() - start, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k items x 2k queries")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    args = parser.parse_args()
    n_items = args.items or (20_000 if args.quick else 100_000)
    n_queries = args.queries or (2_000 if args.quick else 10_000)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, DIM))
    items, queries = unit_vectors(rng, centres, n_items), unit_vectors(rng, centres, n_queries)
    print(f"{n_items} items x {n_queries} queries, D={DIM}, k={K}", flush=True)

    numpy_s = best_seconds(lambda: numpy_top_k(items, queries, K), 3)
    np_scores, np_ids = numpy_top_k(items, queries, K)
    built = {}
    for kind in ("flat", "ivf", "hnsw"):
        start = time.perf_counter()
        built[kind] = (build_index(items, kind), time.perf_counter() - start)
    exact_s = best_seconds(lambda: search(built["flat"][0], queries, K), 3)
    flat_scores, flat_ids = search(built["flat"][0], queries, K)
    identical, differ = same_top_k(flat_ids, flat_scores, np_ids, np_scores)
    rows = [
        ("numpy brute force", numpy_s, "-", 1.0, "-"),
        ("faiss flat (exact)", exact_s, f"{built['flat'][1]:.2f}", numpy_s / exact_s, "1.0"),
    ]
    ann = {}
    for kind in ("ivf", "hnsw"):  # widened as the command does: recall >= 0.95 on the first 1,000 queries
        _, tuned = tune_to_recall(built[kind][0], built["flat"][0], queries[:1000], K, 0.95)
        seconds = best_seconds(lambda: search(built[kind][0], queries, K), 3)
        _, found = search(built[kind][0], queries, K)
        recall = float(np.mean([len(np.intersect1d(f, t)) / K for f, t in zip(found, flat_ids)]))
        ann[kind] = {
            "recall_at_100": round(recall, 4),
            "speedup_vs_exact": round(exact_s / seconds, 2),
            "build_seconds": round(built[kind][1], 2),
            **tuned,
        }
        rows.append(
            (
                f"faiss {kind} ({', '.join(f'{k} {v}' for k, v in tuned.items())})",
                seconds,
                f"{built[kind][1]:.2f}",
                numpy_s / seconds,
                f"{recall:.4f}",
            )
        )
    print(f"{'search':<30} {'seconds':>8} {'build s':>8} {'vs numpy':>9} {'recall@100':>11}")
    for name, seconds, build, ratio, recall in rows:
        print(f"{name:<30} {seconds:>8.3f} {build:>8} {ratio:>8.2f}x {recall:>11}")
    print(
        f"exact top-{K} equal to numpy's (scores within 1e-5): {identical}; queries whose id lists differ (ties): {differ}"
    )
    command = {}
    for kind in ("flat", "hnsw"):
        seconds, summary = command_seconds(items, queries, kind)
        command[kind] = {
            "seconds": round(seconds, 2),
            "queries_per_s": round(n_queries / seconds, 1),
            "recall_reported": summary.get(f"recall_at_{K}_vs_exact"),
        }
        print(
            f"deepsets retrieve --index {kind}: {seconds:.2f} s end to end ({n_queries / seconds:.0f} queries/s), "
            f"recall reported {command[kind]['recall_reported']}"
        )
    best = max(
        (k for k in ann if ann[k]["recall_at_100"] >= 0.95), key=lambda k: ann[k]["speedup_vs_exact"], default="hnsw"
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak memory of this process: {peak_mib:.0f} MiB (items {items.nbytes / 2**20:.0f} MiB, queries {queries.nbytes / 2**20:.0f} MiB)"
    )
    print(
        json.dumps(
            {
                "items": n_items,
                "queries": n_queries,
                "exact_speedup_vs_numpy": round(numpy_s / exact_s, 2),
                "identical_topk": identical,
                "ann_index": best,
                "ann_recall_at_100": ann[best]["recall_at_100"],
                "ann_speedup_vs_exact": ann[best]["speedup_vs_exact"],
                "ann": ann,
                "command": command,
                "peak_rss_mib": round(peak_mib),
            }
        )
    )


if __name__ == "__main__":
    main()
