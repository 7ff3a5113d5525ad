"""``deepsets retrieve``: the top-k items of every query, from two ``deepsets embed`` outputs.

    index    -- the item vectors (all in memory) in a FAISS index: exact inner product by
                default, ``ivf`` or ``hnsw`` when asked: their search is widened until the
                recall@k against exact search on the first ``recall_queries`` queries reaches
                ``target_recall`` (ivf with ``nprobe`` given: measured only), and reported;
    search   -- the query parts streamed ``batch_size`` rows at a time; pairs in ``--exclude``
                are dropped (the search asks for k plus the query's exclusions);
    write    -- per query part, ``part-NNNNN.parquet`` of (query id, rank, item id, score),
                written hidden and renamed when complete; queries without a usable vector go
                to ``rejects.parquet`` with the reason; ``_SUCCESS.json`` holds the summary.

Every query is accounted for: ``queries_in == queries_out + queries_rejected``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from deepsets.pipelines.embedding.output import SUCCESS, write_json
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.options import parse_options
from deepsets.pipelines.retrieval.exclusions import Exclusions, exclusion_columns, read_exclusions
from deepsets.pipelines.retrieval.index import build_index, recall_against_exact, search, tune_to_recall
from deepsets.pipelines.retrieval.vectors import EmbeddingFolder, VectorBatch

REJECTS = "rejects.parquet"  # beside part-*.parquet and _SUCCESS.json (named as the embed job names its own)


class RetrieveConfig(BaseModel):
    """What ``deepsets retrieve`` is asked to do (validated before anything runs)."""

    model_config = ConfigDict(extra="forbid")

    items: str = Field(min_length=1, description="the --output folder of `deepsets embed --tower item`")
    queries: str = Field(min_length=1, description="the --output folder of `deepsets embed --tower query`")
    k: int = Field(100, ge=1)
    out: str = Field(min_length=1)
    exclude: Optional[str] = Field(None, description="Parquet of (query id, item id) pairs never to return")
    exclude_columns: str = Field("", description="QUERY_COLUMN,ITEM_COLUMN in --exclude (default: the embeddings' id columns)")
    index: Literal["flat", "ivf", "hnsw"] = "flat"
    nprobe: Optional[int] = Field(None, ge=1, description="ivf: lists searched per query (default: tuned to target_recall)")
    target_recall: float = Field(0.95, gt=0, le=1, description="approximate indexes: search widened until recall@k on the sample reaches it")
    batch_size: int = Field(4096, ge=1)
    recall_queries: int = Field(1000, ge=1, description="approximate indexes: queries whose recall against exact search is measured")
    overwrite: bool = False


def parse_retrieve_config(**values) -> RetrieveConfig:
    """:class:`RetrieveConfig` from keyword values.

    Raises:
        ConfigError: every bad option.
    """
    return parse_options(RetrieveConfig, "retrieve", values)


def run_retrieve(cfg: RetrieveConfig, progress: bool = True) -> dict:
    """Retrieve; returns the summary ``--json`` prints (also in ``<out>/_SUCCESS.json``).

    Raises:
        DataError: unreadable or mismatched embeddings, a bad exclusion file.
        JobError: an unfinished embed output, FAISS missing, an output folder in the way.
    """
    started = time.perf_counter()
    items, queries = EmbeddingFolder.open(cfg.items, "--items"), EmbeddingFolder.open(cfg.queries, "--queries")
    check_pair(items, queries)
    out = prepare_out(Path(cfg.out), cfg.overwrite)
    item_ids, item_rows = items.load()
    index_ids = item_ids.filter(pa.array(item_rows.usable))
    if len(index_ids) == 0:
        raise JobError(f"--items {items.path}: no item has a usable vector ({_reasons(item_rows)})")
    index = build_index(item_rows.vectors[item_rows.usable], cfg.index, nprobe=cfg.nprobe)
    recall, tuned, sample = None, {}, np.zeros((0, items.dim), np.float32)
    if cfg.index != "flat":  # measured (and, unless --nprobe fixes it, tuned) on the first queries
        exact = build_index(item_rows.vectors[item_rows.usable], "flat")
        sample = first_usable(queries, cfg.recall_queries, cfg.batch_size)
        if cfg.nprobe:
            recall = recall_against_exact(index, exact, sample, cfg.k)
        else:
            recall, tuned = tune_to_recall(index, exact, sample, cfg.k, cfg.target_recall)
        del exact
    excluded = Exclusions()
    if cfg.exclude:
        query_column, item_column = exclusion_columns(cfg.exclude_columns, queries.id_column, items.id_column)
        excluded = read_exclusions(cfg.exclude, query_column, item_column, queries.id_type, index_ids)
    item_column = items.id_column if items.id_column != queries.id_column else f"item_{items.id_column}"
    counts = Counter()
    rejects = _Rejects(out / REJECTS, queries.id_column, queries.id_type)
    bar = tqdm(total=queries.rows, unit="query", disable=not progress, desc="retrieve")
    for number, part in enumerate(queries.parts):
        target = out / f"part-{number:05d}.parquet"
        hidden = out / f".{target.name}.tmp"
        writer = pq.ParquetWriter(hidden, _schema(queries, item_column, items.id_type))
        for batch in queries.batches_of(part, cfg.batch_size):
            counts["queries_in"] += len(batch.ids)
            rejects.add(batch)
            keep = np.flatnonzero(batch.usable)
            if keep.size:
                table, short = _top_k(index, index_ids, batch, keep, cfg.k, excluded, queries.id_column, item_column)
                writer.write_table(table)
                counts["queries_out"] += keep.size
                counts["queries_short"] += short
            bar.update(len(batch.ids))
        writer.close()
        hidden.rename(target)
    bar.close()
    rejects.close()
    summary = {
        "queries_in": counts["queries_in"], "queries_out": counts["queries_out"], "queries_rejected": rejects.rows,
        "rejected_by_reason": rejects.by_reason(), "queries_short": counts["queries_short"], "k": cfg.k, "index": cfg.index,
        "items_indexed": len(index_ids), "items_rejected": int((~item_rows.usable).sum()), "items_rejected_by_reason": _reasons(item_rows),
        f"recall_at_{cfg.k}_vs_exact": None if recall is None else round(recall, 4), "recall_queries": len(sample), "index_settings": tuned,
        "exclusions": excluded.summary() if cfg.exclude else None, "output": str(out),
        "seconds": round(time.perf_counter() - started, 2),
    }
    summary["queries_per_s"] = round(summary["queries_in"] / max(summary["seconds"], 1e-9), 1)
    if summary["queries_in"] != summary["queries_out"] + summary["queries_rejected"]:
        raise JobError(f"accounting failed: {summary['queries_in']} queries read, {summary['queries_out']} answered, "
                       f"{summary['queries_rejected']} rejected")
    write_json(out / SUCCESS, {"job": "retrieve", **summary, "items": str(items.path), "queries": str(queries.path)})
    return summary


def first_usable(folder: EmbeddingFolder, count: int, batch_rows: int) -> np.ndarray:
    """The first ``count`` usable vectors of ``folder``: (<= count, D) float32."""
    found, total = [], 0
    for batch in folder.batches(batch_rows):
        found.append(batch.vectors[batch.usable][: count - total])
        total += len(found[-1])
        if total >= count:
            break
    return np.concatenate(found) if found else np.zeros((0, folder.dim), np.float32)


def check_pair(items: EmbeddingFolder, queries: EmbeddingFolder) -> None:
    """The two folders were embedded by one model, each by its own tower, at one width.

    Raises:
        JobError: swapped towers, two different models, or two widths.
    """
    if items.tower == "query" or queries.tower == "item":
        raise JobError(f"--items {items.path} holds the {items.tower} tower and --queries {queries.path} the {queries.tower} tower: swap them")
    if items.weights_sha256 and queries.weights_sha256 and items.weights_sha256 != queries.weights_sha256:
        raise JobError(f"--items {items.path} and --queries {queries.path} were embedded by different models (weights sha256 "
                       f"{items.weights_sha256[:12]} vs {queries.weights_sha256[:12]}): their scores would mean nothing")
    if items.dim != queries.dim:
        raise JobError(f"--items vectors have {items.dim} values and --queries vectors {queries.dim}: they must match")


def prepare_out(out: Path, overwrite: bool) -> Path:
    """An empty output folder; ``overwrite`` clears an earlier retrieve job's files, and only those.

    Raises:
        JobError: the folder holds files, and ``overwrite`` was not given or they are not a retrieve job's.
    """
    if out.exists() and any(out.iterdir()):
        ours = [p for p in out.iterdir() if p.name in (SUCCESS, REJECTS) or (p.name.startswith(("part-", ".part-")) and ".parquet" in p.name)]
        foreign = sorted(set(out.iterdir()) - set(ours))
        if not overwrite:
            raise JobError(f"--out {out} is not empty: pass --overwrite to replace an earlier retrieve job's output")
        if foreign or not (out / SUCCESS).exists():
            raise JobError(f"--out {out} holds files deepsets retrieve did not write ({foreign[0].name if foreign else 'no ' + SUCCESS}): "
                           "choose another folder")
        for path in ours:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _top_k(index, index_ids: pa.Array, batch: VectorBatch, keep: np.ndarray, k: int, excluded: Exclusions,
           query_column: str, item_column: str) -> tuple[pa.Table, int]:
    """The result rows of the usable queries ``keep`` of ``batch``, and how many got fewer than k."""
    query_ids = batch.ids.take(pa.array(keep))
    dropped = [excluded.of(q) for q in query_ids.to_pylist()]
    scores, positions = search(index, batch.vectors[keep], k + max(len(d) for d in dropped))  # (Q, k'), (Q, k')
    rows, ranks, found, values, short = [], [], [], [], 0
    for q, (score, position, drop) in enumerate(zip(scores, positions, dropped)):
        take = (position >= 0) & ~np.isin(position, drop)  # (k',)
        chosen = np.flatnonzero(take)[:k]
        short += chosen.size < k
        rows.append(np.full(chosen.size, q))
        ranks.append(np.arange(1, chosen.size + 1, dtype=np.int32))
        found.append(position[chosen])
        values.append(score[chosen])
    rows = np.concatenate(rows)
    table = pa.table({query_column: query_ids.take(pa.array(rows)), "rank": pa.array(np.concatenate(ranks)),
                      item_column: index_ids.take(pa.array(np.concatenate(found))),
                      "score": pa.array(np.concatenate(values).astype(np.float32))})
    return table, int(short)


def _schema(queries: EmbeddingFolder, item_column: str, item_type: pa.DataType) -> pa.Schema:
    return pa.schema([(queries.id_column, queries.id_type), ("rank", pa.int32()), (item_column, item_type), ("score", pa.float32())])


def _reasons(rows: VectorBatch) -> dict:
    return dict(Counter(rows.problem[~rows.usable].tolist()))


class _Rejects:
    """Queries without a usable vector: written to ``rejects.parquet`` as they come."""

    def __init__(self, path: Path, id_column: str, id_type: pa.DataType):
        self.path, self.writer, self.rows, self.reasons = path, None, 0, Counter()
        self.schema = pa.schema([(id_column, id_type), ("source_part", pa.string()), ("source_row", pa.int64()), ("reason", pa.string())])

    def add(self, batch: VectorBatch) -> None:
        bad = np.flatnonzero(~batch.usable)
        if not bad.size:
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema)
        reasons = batch.problem[bad].tolist()
        self.writer.write_table(pa.table([batch.ids.take(pa.array(bad)), pa.array([batch.part.name] * bad.size),
                                          pa.array(batch.first_row + bad, pa.int64()), pa.array(reasons, pa.string())], schema=self.schema))
        self.rows += bad.size
        self.reasons.update(reasons)

    def by_reason(self) -> dict:
        return dict(self.reasons)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
