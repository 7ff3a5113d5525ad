"""``deepsets retrieve``: the top-k items of every query, from two ``deepsets embed`` outputs.

    index    -- the item vectors (all in memory) in a FAISS index: exact inner product by
                default, ``ivf`` or ``hnsw`` when asked: their search is widened until the
                recall@k against exact search on the first ``recall_queries`` queries reaches
                ``target_recall`` (ivf with ``nprobe`` given: measured only), and reported;
    search   -- the query parts streamed ``batch_size`` rows at a time; pairs in ``--exclude``
                are dropped (the search asks for k plus the query's exclusions);
    write    -- per query part, ``part-NNNNN.parquet`` of (query id, rank, item id, score);
                queries without a usable vector go to ``rejects.parquet`` with the reason; each
                file appears whole when complete (written hidden and renamed, or one PUT on
                object storage: :class:`deepsets.pipelines.embedding.parts.PartFile`);
                ``_SUCCESS.json`` holds the summary.

Every query is accounted for: ``queries_in == queries_out + queries_rejected``. ``--items``,
``--queries`` and ``--out`` may each be local or on object storage (``s3://bucket/prefix``).
A job that fails leaves its finished parts and no half-written file; ``--overwrite`` clears
what it wrote (known by name) and starts again.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from deepsets.features import storage
from deepsets.pipelines.embedding.layout import SUCCESS
from deepsets.pipelines.embedding.parts import PartFile
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.retrieval.config import (  # the job's config; callers import it from here too
    RetrieveConfig,
    parse_retrieve_config,  # noqa: F401
)
from deepsets.pipelines.retrieval.exclusions import Exclusions, exclusion_columns, read_exclusions
from deepsets.pipelines.retrieval.index import build_index, recall_against_exact, search, tune_to_recall
from deepsets.pipelines.retrieval.vectors import EmbeddingFolder, VectorBatch

REJECTS = "rejects.parquet"  # beside part-*.parquet and _SUCCESS.json (named as the embed job names its own)
OURS = re.compile(
    r"^(_SUCCESS\.json|rejects\.parquet|part-\d{5,}\.parquet|\.(rejects|part-\d{5,})\.parquet\.tmp(-\d+)?)$"
)
"""What a retrieve job writes into --out: its parts, rejects and summary, and the hidden temp
files of a write it did not finish (its process killed mid-write)."""


def run_retrieve(cfg: RetrieveConfig, progress: bool = True) -> dict:
    """Retrieve; returns the summary ``--json`` prints (also in ``<out>/_SUCCESS.json``).

    Raises:
        DataError: unreadable or mismatched embeddings, a bad exclusion file.
        JobError: an unfinished embed output, FAISS missing, an output folder in the way.
    """
    started = time.perf_counter()
    items, queries = EmbeddingFolder.open(cfg.items, "--items"), EmbeddingFolder.open(cfg.queries, "--queries")
    check_pair(items, queries)
    out = prepare_out(storage.absolute(cfg.out).rstrip("/"), cfg.overwrite)
    item_ids, item_rows = items.load()
    index_ids = item_ids.filter(pa.array(item_rows.usable))
    if len(index_ids) == 0:
        raise JobError(f"--items {items.path}: no item has a usable vector ({_reasons(item_rows)})")
    index = build_index(item_rows.vectors[item_rows.usable], cfg.index, nprobe=cfg.nprobe)
    recall, tuned, sample, unmeasured = None, {}, np.zeros((0, items.dim), np.float32), None
    if cfg.index != "flat":  # measured (and, unless --nprobe fixes it, tuned) on the first queries
        sample = first_usable(queries, cfg.recall_queries, cfg.batch_size)
        if len(sample):
            exact = build_index(item_rows.vectors[item_rows.usable], "flat")
            if cfg.nprobe:
                recall = recall_against_exact(index, exact, sample, cfg.k)
            else:
                recall, tuned = tune_to_recall(index, exact, sample, cfg.k, cfg.target_recall)
            del exact
        else:
            unmeasured = "no query has a usable vector to measure it on"
    excluded = Exclusions()
    if cfg.exclude:
        query_column, item_column = exclusion_columns(cfg.exclude_columns, queries.id_column, items.id_column)
        excluded = read_exclusions(cfg.exclude, query_column, item_column, queries.id_type, index_ids)
    item_column = items.id_column if items.id_column != queries.id_column else f"item_{items.id_column}"
    counts = Counter()
    schema = _schema(queries, item_column, items.id_type)
    rejects = _Rejects(storage.join(out, REJECTS), queries.id_column, queries.id_type)
    bar = tqdm(total=queries.rows, unit="query", disable=not progress, desc="retrieve")
    try:
        for number, part in enumerate(queries.parts):
            written = PartFile(storage.join(out, f"part-{number:05d}.parquet"))
            try:
                for batch in queries.batches_of(part, cfg.batch_size):
                    counts["queries_in"] += len(batch.ids)
                    rejects.add(batch)
                    keep = np.flatnonzero(batch.usable)
                    if keep.size:
                        table, short = _top_k(
                            index, index_ids, batch, keep, cfg.k, excluded, queries.id_column, item_column
                        )
                        written.write(table.cast(schema), {})
                        counts["queries_out"] += keep.size
                        counts["queries_short"] += short
                    bar.update(len(batch.ids))
                if written.rows == 0:  # every query of the part rejected: the part still says so, with no rows
                    written.write(schema.empty_table(), {})
                written.commit()
            finally:
                written.discard()  # closes and removes an unfinished write (nothing after commit)
        rejects.commit()
    finally:
        rejects.discard()
        bar.close()
    summary = {
        "queries_in": counts["queries_in"],
        "queries_out": counts["queries_out"],
        "queries_rejected": rejects.rows,
        "rejected_by_reason": rejects.by_reason(),
        "queries_short": counts["queries_short"],
        "k": cfg.k,
        "index": cfg.index,
        "items_indexed": len(index_ids),
        "items_rejected": int((~item_rows.usable).sum()),
        "items_rejected_by_reason": _reasons(item_rows),
        f"recall_at_{cfg.k}_vs_exact": None if recall is None else round(recall, 4),
        "recall_not_measured": unmeasured,
        "recall_queries": len(sample),
        "index_settings": tuned,
        "exclusions": excluded.summary() if cfg.exclude else None,
        "output": out,
        "seconds": round(time.perf_counter() - started, 2),
    }
    summary["queries_per_s"] = round(summary["queries_in"] / max(summary["seconds"], 1e-9), 1)
    if summary["queries_in"] != summary["queries_out"] + summary["queries_rejected"]:
        raise JobError(
            f"accounting failed: {summary['queries_in']} queries read, {summary['queries_out']} answered, "
            f"{summary['queries_rejected']} rejected"
        )
    # allow_nan=False: a number that is not one fails here rather than write JSON no parser reads
    storage.write_text(
        storage.join(out, SUCCESS),
        json.dumps(
            {"job": "retrieve", **summary, "items": items.path, "queries": queries.path},
            indent=1,
            sort_keys=True,
            allow_nan=False,
        ),
    )
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
        raise JobError(
            f"--items {items.path} holds the {items.tower} tower and --queries {queries.path} the {queries.tower} tower: swap them"
        )
    if items.weights_sha256 and queries.weights_sha256 and items.weights_sha256 != queries.weights_sha256:
        raise JobError(
            f"--items {items.path} and --queries {queries.path} were embedded by different models (weights sha256 "
            f"{items.weights_sha256[:12]} vs {queries.weights_sha256[:12]}): their scores would mean nothing"
        )
    if items.dim != queries.dim:
        raise JobError(f"--items vectors have {items.dim} values and --queries vectors {queries.dim}: they must match")


def prepare_out(out: str, overwrite: bool) -> str:
    """An empty output folder (local or a prefix on object storage); ``overwrite`` clears what a
    retrieve job writes (:data:`OURS`: a finished job's files, or what a failed or killed one
    left), and only that.

    Raises:
        JobError: the folder holds files, and ``overwrite`` was not given or some are not a retrieve job's.
    """
    found = storage.children(out)
    if found:
        if not overwrite:
            raise JobError(f"--out {out} is not empty: pass --overwrite to replace an earlier retrieve job's output")
        foreign = [name for name, is_dir in found if is_dir or not OURS.match(name)]
        if foreign:
            raise JobError(
                f"--out {out} holds files deepsets retrieve did not write ({foreign[0]}): choose another folder"
            )
        for name, _ in found:
            storage.delete(storage.join(out, name))
    storage.make_dirs(out)
    return out


def _top_k(
    index,
    index_ids: pa.Array,
    batch: VectorBatch,
    keep: np.ndarray,
    k: int,
    excluded: Exclusions,
    query_column: str,
    item_column: str,
) -> tuple[pa.Table, int]:
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
    table = pa.table(
        {
            query_column: query_ids.take(pa.array(rows)),
            "rank": pa.array(np.concatenate(ranks)),
            item_column: index_ids.take(pa.array(np.concatenate(found))),
            "score": pa.array(np.concatenate(values).astype(np.float32)),
        }
    )
    return table, int(short)


def _schema(queries: EmbeddingFolder, item_column: str, item_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [(queries.id_column, queries.id_type), ("rank", pa.int32()), (item_column, item_type), ("score", pa.float32())]
    )


def _reasons(rows: VectorBatch) -> dict:
    return dict(Counter(rows.problem[~rows.usable].tolist()))


class _Rejects:
    """Queries without a usable vector, written to ``rejects.parquet`` as they come; the file
    appears (whole) at :meth:`commit`, and only when a query was rejected."""

    def __init__(self, path: str, id_column: str, id_type: pa.DataType):
        self.file, self.rows, self.reasons = PartFile(path), 0, Counter()
        self.schema = pa.schema(
            [(id_column, id_type), ("source_part", pa.string()), ("source_row", pa.int64()), ("reason", pa.string())]
        )

    def add(self, batch: VectorBatch) -> None:
        bad = np.flatnonzero(~batch.usable)
        if not bad.size:
            return
        reasons = batch.problem[bad].tolist()
        self.file.write(
            pa.table(
                [
                    batch.ids.take(pa.array(bad)),
                    pa.array([storage.name_of(batch.part)] * bad.size),
                    pa.array(batch.first_row + bad, pa.int64()),
                    pa.array(reasons, pa.string()),
                ],
                schema=self.schema,
            ),
            {},
        )
        self.rows += bad.size
        self.reasons.update(reasons)

    def by_reason(self) -> dict:
        return dict(self.reasons)

    def commit(self) -> None:
        if self.rows:
            self.file.commit()

    def discard(self) -> None:
        """Drop an unfinished file (nothing to do after :meth:`commit`)."""
        self.file.discard()
