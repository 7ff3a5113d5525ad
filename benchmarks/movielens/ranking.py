"""Ranking metrics over MovieLens queries: each query's held-out movie ranked among all movies,
the user's earlier movies left out, and the paired bootstrap interval of one method's lead.

    users, targets, exclude, seen_users, seen_items = queries(data, "test", ("train", "valid"), index)
    values = per_query(target_ranks(scores, targets, exclude))   # {"ndcg_at_10": (Q,), ...}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

K = 10
BOOTSTRAP = 2000


def embed_side(model_uri: str, inputs: str, out: Path, tower: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, unit-length embeddings) of one tower over ``inputs``, by the ``deepsets embed`` job."""
    from deepsets.pipelines.embedding.job import parse_embed_config, run_embed

    summary = run_embed(
        parse_embed_config(model=model_uri, inputs=[inputs], output=str(out), tower=tower, workers=2, overwrite=True),
        progress=False,
    )
    if summary["rows_rejected"]:
        raise RuntimeError(
            f"{summary['rows_rejected']} rows rejected embedding {inputs}: {summary.get('reject_reasons')}"
        )
    return read_side(out)


def read_side(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, embeddings) of an embed output folder, in id order: (N,), (N, D)."""
    table = pq.read_table(out / "embeddings").sort_by("event_id")
    return table["event_id"].to_numpy(), np.stack(table["embedding"].to_numpy(zero_copy_only=False))


def per_query(ranks: np.ndarray) -> dict:
    """Per-query NDCG@K, hit@K and reciprocal rank (numpy, (Q,) each) from
    :func:`target_ranks`' (Q, 2) counts (above, tied): expectations over the orders of ties."""
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
    leave out (in time order: event ids run by user, then time), and the interactions of the
    ``before`` splits as (user, item index) arrays)."""
    to_index = np.vectorize(index.__getitem__, otypes=[np.int64])
    seen = pa.concat_tables(
        [pq.read_table(data / f"{s}.parquet", columns=["event_id", "user_id", "movie_id"]) for s in before]
    ).sort_by("event_id")
    seen_users, seen_items = seen["user_id"].to_numpy(), to_index(seen["movie_id"].to_numpy())
    rows = pq.read_table(data / f"{split}.parquet", columns=["event_id", "user_id", "movie_id"]).sort_by("event_id")
    users, targets = rows["user_id"].to_numpy(), to_index(rows["movie_id"].to_numpy())
    order = np.argsort(seen_users, kind="stable")
    starts = np.searchsorted(seen_users[order], users), np.searchsorted(seen_users[order], users, side="right")
    exclude = [seen_items[order[a:b]] for a, b in zip(*starts)]
    return users, targets, exclude, seen_users, seen_items
