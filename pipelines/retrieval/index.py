"""Inner-product search over item vectors with FAISS: exact (``flat``) or approximate
(``ivf``: inverted lists; ``hnsw``: a neighbour graph), on all GPUs when FAISS sees any."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from deepsets.pipelines.errors import JobError

INDEXES = ("flat", "ivf", "hnsw")


def import_faiss():
    """The ``faiss`` module.

    Raises:
        JobError: FAISS is not installed.
    """
    try:
        import faiss
    except ImportError as err:
        raise JobError(
            "deepsets retrieve needs FAISS: pip install 'deepsets[retrieval]' (faiss-cpu), or faiss-gpu on a GPU machine"
        ) from err
    return faiss


def build_index(
    vectors: np.ndarray,
    kind: str,
    *,
    nlist: Optional[int] = None,
    nprobe: Optional[int] = None,
    hnsw_neighbors: int = 32,
    ef_search: int = 128,
    seed: int = 0,
):
    """An index holding ``vectors`` (position i = row i), searched by inner product.

    Args:
        vectors: (N, D) float32 item vectors.
        kind: ``flat`` (exact), ``ivf`` or ``hnsw`` (approximate).
        nlist: ivf lists (default about 4 sqrt(N), at least 39 vectors per list to train).
        nprobe: ivf lists searched per query (default nlist / 8, at least 1).
        hnsw_neighbors: hnsw links per vector.
        ef_search: hnsw candidates kept while searching (at least k is used).
        seed: ivf's k-means seed.

    Raises:
        JobError: FAISS missing, or an unknown kind.
    """
    faiss = import_faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D)
    n, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(vectors)
        index.nprobe = nprobe or max(1, nlist // 8)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_neighbors, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    else:
        raise JobError(f"unknown index {kind!r} (expected one of {', '.join(INDEXES)})")
    index.add(vectors)
    if kind != "hnsw" and faiss.get_num_gpus() > 0:  # FAISS has no GPU hnsw
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` items of each query: (scores (Q, k) float32, positions (Q, k) int64), best
    first; position -1 (score -inf) where the index returned fewer than k."""
    k = max(1, min(k, index.ntotal))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(index.hnsw.efSearch, k)
    scores, positions = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)  # (Q, k), (Q, k)
    scores[positions < 0] = -np.inf
    return scores, positions


def tune_to_recall(index, exact, queries: np.ndarray, k: int, target: float) -> tuple[float, dict]:
    """Widen an approximate index's search (ivf: ``nprobe``; hnsw: ``efSearch``), doubling it,
    until its recall@k against ``exact`` on ``queries`` reaches ``target`` or cannot grow.

    Returns:
        ``(recall, {setting: value})`` as finally set.
    """
    faiss = import_faiss()
    if hasattr(index, "hnsw"):
        name, value, ceiling = "efSearch", max(index.hnsw.efSearch, k), max(4096, k)
        setter = lambda v: setattr(index.hnsw, "efSearch", v)  # noqa: E731
    else:
        ivf = faiss.extract_index_ivf(index)
        name, value, ceiling = "nprobe", ivf.nprobe, ivf.nlist
        setter = lambda v: faiss.ParameterSpace().set_index_parameter(index, "nprobe", v)  # noqa: E731 - CPU or GPU index
    _, truth = search(exact, queries, k)  # the exact answers, once
    setter(value)
    recall = _recall(index, truth, queries, k)
    while recall < target and value < ceiling:
        value = min(ceiling, value * 2)
        setter(value)
        recall = _recall(index, truth, queries, k)
    return recall, {name: value}


def recall_against_exact(approximate, exact, queries: np.ndarray, k: int) -> float:
    """Mean share of each query's exact top ``k`` that ``approximate`` also returns."""
    if len(queries) == 0:
        return float("nan")
    _, truth = search(exact, queries, k)
    return _recall(approximate, truth, queries, k)


def _recall(approximate, truth: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean share of each row of ``truth`` (exact top-k positions) that ``approximate`` returns."""
    if len(queries) == 0:
        return float("nan")
    _, found = search(approximate, queries, k)
    hits = [len(np.intersect1d(f[f >= 0], t[t >= 0])) / max(1, int((t >= 0).sum())) for f, t in zip(found, truth)]
    return float(np.mean(hits))
