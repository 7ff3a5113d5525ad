"""One fragment of an embedding job: read its rows, embed them, write them (or reject them).

A fragment's output appears all at once (:mod:`deepsets.pipelines.embedding.parts`: locally a hidden
temp file synced and renamed into place, on object storage one PUT), ``rejects/<name>`` before
``embeddings/<name>``. An existing ``embeddings/<name>`` therefore means "this fragment is
done", which is what makes ``--resume`` exactly once after any crash (and
``deepsets.pipelines.embedding.output`` checks each kept part's footer, rows and model fingerprint).
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from deepsets.features import storage
from deepsets.features.errors import DataError
from deepsets.features.files import open_parquet
from deepsets.features.fragments import Fragment, read_run
from deepsets.features.spec import FeatureSpec
from deepsets.inference import outputs_of
from deepsets.pipelines.embedding.parts import PartFile

try:
    _LIBC = ctypes.CDLL("libc.so.6")  # glibc, for malloc_trim
except OSError:  # not glibc (macOS, musl): nothing to trim
    _LIBC = None

EMBEDDINGS, REJECTS = "embeddings", "rejects"
FINGERPRINT_KEY = b"deepsets.weights_sha256"
"""The part metadata naming the model that wrote it (the sha256 of its weights)."""
SOURCE_FILE, SOURCE_ROW = "source_file", "source_row"
REJECT_COLUMN, REJECT_REASON = "reject_column", "reject_reason"
RESERVED = (SOURCE_FILE, SOURCE_ROW, "embedding", REJECT_COLUMN, REJECT_REASON)


def split_bad_rows(
    spec: FeatureSpec, table: pa.Table, id_column: Optional[str] = None
) -> Tuple[Optional[Any], np.ndarray, List[tuple]]:
    """Transform ``table``, setting aside the rows a check rejects until the rest converts.

    Args:
        spec: the model's feature spec.
        table: the rows to embed.
        id_column: the ids that key the output: a row without one is rejected ("null id"), as
            its embedding could not be joined back to anything.

    Returns:
        ``(batch, kept, rejected)``: the FeatureBatch of the kept rows (None if none is
        left), their positions in ``table``, and ``(positions, column, reason)`` per failed check.

    Raises:
        DataError: for a problem that is not about particular rows (e.g. a wrong column type).
    """
    kept = np.arange(table.num_rows)
    rejected: List[tuple] = []
    if id_column and table.column(id_column).null_count:
        null = table.column(id_column).is_null().to_numpy(zero_copy_only=False)  # (N,)
        rejected.append((kept[null], id_column, "null id"))
        kept = kept[~null]
    while kept.size:
        part = table if kept.size == table.num_rows else table.take(pa.array(kept))
        try:
            return spec.transform(part, with_ids=False), kept, rejected
        except DataError as err:
            if err.rows is None or err.rows.size == 0:
                raise
            rejected.append((kept[err.rows], err.column or "", err.detail))
            kept = np.delete(kept, err.rows)
    return None, kept, rejected


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    """(B, D) float32 -> fixed_size_list<float32>[D]."""
    values = np.ascontiguousarray(values, dtype=np.float32)  # (B, D)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _ids(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids as int64 or string, so every output file has the same id type (the job checked
    before any work that every input's ids are integers fitting int64, or strings)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64())
    if pa.types.is_large_string(column.type) or pa.types.is_string_view(column.type):
        return column.cast(pa.string())
    return column


MMAP_THRESHOLD_BYTES = 8 << 20
"""Allocations from this size up are mmapped, so freeing them returns them to the OS at once."""

HUGE_PAGES_ENV = {"THP_MEM_ALLOC_ENABLE": "1"}
"""Torch's switch for backing its CPU buffers of 2 MB and more with transparent huge pages."""


def fix_mmap_threshold() -> None:
    """Stop glibc from raising its mmap threshold (up to 32 MB) after large frees.

    Otherwise the 8-32 MB tensors of a forward pass move onto the heap, freed memory stays
    mapped between batches and fragments, and a worker's peak memory creeps up with the number
    of batches it embeds (1,096 vs 1,435 MB after 160k rows here). Not glibc: no-op.
    """
    if _LIBC is not None:
        _LIBC.mallopt(-3, MMAP_THRESHOLD_BYTES)  # M_MMAP_THRESHOLD; setting it disables the dynamic threshold


def prepare_process(threads: int) -> None:
    """Set up an embed actor's process: ``threads`` torch threads, bounded memory, huge pages.

    Call it before the process's first tensor. With the mmap threshold fixed, every large
    tensor of a forward pass is mapped and unmapped again each batch, and each 4 KB page
    faults in zeroed: 700-800k page faults and 1.0-1.3 s of system time per 30k-row fragment
    here, a fifth of a worker's CPU. :data:`HUGE_PAGES_ENV` has torch back those buffers with
    2 MB transparent huge pages instead (where the kernel allows ``madvise``; elsewhere nothing
    changes): 70-90k faults and 0.3 s. Torch reads it at its first CPU allocation; in a process
    that allocated before (a reused Ray worker) it is too late and only the speed-up is lost.
    """
    os.environ.update(HUGE_PAGES_ENV)
    torch.set_num_threads(max(1, threads))
    fix_mmap_threshold()


def release_memory() -> None:
    """Hand a finished fragment's memory back to the OS, so a worker's footprint stays flat
    however many fragments it embeds (glibc otherwise keeps freed tensor and Arrow buffers).
    No ``gc.collect()``: the tables are freed by reference counting, and a full collection
    costs ~0.1 s with torch and Ray loaded."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class _FragmentOutput:
    """One fragment's output while its rows arrive: the part being written and its rejects."""

    def __init__(self, embedder: "FragmentEmbedder", fragment: Fragment) -> None:
        self.embedder, self.fragment = embedder, fragment
        self.started_at = time.time()
        self.part = PartFile(storage.join(embedder.out_dir, EMBEDDINGS, fragment.name))
        self.reject_path = storage.join(embedder.out_dir, REJECTS, fragment.name)
        storage.delete(self.reject_path)  # a leftover from an attempt that did not finish
        self.rejects: List[pa.Table] = []
        self.metadata = {**embedder.metadata, "deepsets.source_file": fragment.path}

    def add(self, row_base: int, table: pa.Table) -> None:
        """Embed rows of the fragment (``row_base``: the file row of the table's first row) and
        append them to its part; set aside the rows a check rejects.

        Raises:
            DataError: for a problem that is not about particular rows, located in the file.
        """
        e = self.embedder
        try:
            features, kept, rejected = split_bad_rows(e.spec, table, e.id_column)
        except DataError as err:
            raise err.located(self.fragment.path, row_base) from None
        if rejected:
            self.rejects.append(e._rejects_table(self.fragment, table, row_base, rejected))
        if features is not None:
            self.part.write(e._output_table(self.fragment, table, row_base, kept, e._forward(features)), self.metadata)

    def finish(self) -> dict:
        """Commit the fragment's files (rejects first: an existing part means the whole
        fragment is accounted for); returns its counts."""
        rows_out = self.part.rows
        if self.part.writer is None:  # no row written: an empty file still marks the fragment done
            self.part.write(self.embedder._empty_output(self.fragment), self.metadata)
        rows_rejected = 0
        if self.rejects:
            joined = pa.concat_tables(self.rejects, promote_options="permissive")
            rows_rejected = joined.num_rows
            reject_part = PartFile(self.reject_path)
            reject_part.write(joined.replace_schema_metadata(None), self.metadata)
            reject_part.commit()
        self.part.commit()
        return {
            "name": self.fragment.name,
            "rows_in": self.fragment.rows,
            "rows_out": rows_out,
            "rows_rejected": rows_rejected,
            "error": "",
            "started_at": self.started_at,
            "finished_at": time.time(),
        }


class FragmentEmbedder:
    """Embeds fragments with one model; a Ray Data callable class (one per actor).

    Args:
        payload: ``[ref]``, ``ref`` a Ray object holding :meth:`ModelSource.payload` (in a list, so
            the actor's constructor arguments stay small and the weights are fetched once).
        out_dir: the job's output directory.
        batch_size: rows per forward pass.
        with_modalities: also write per-modality vectors and presence.
        device: ``cpu`` or ``cuda``.
        threads: torch intra-op threads (the CPUs given to this worker).
    """

    def __init__(
        self,
        payload: List[Any],
        out_dir: str,
        batch_size: int,
        with_modalities: bool,
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        import ray

        from deepsets.pipelines.models.source import ModelSource

        prepare_process(threads)  # before the first tensor (the model's weights come next)
        source = ModelSource.from_payload(ray.get(payload[0]))
        self.node_id = ray.get_runtime_context().get_node_id()  # the job reports the nodes it ran on
        self.spec = source.input_spec
        self.model: nn.Module = source.build().to(device)
        self.device = device
        self.out_dir = out_dir
        self.batch_size = batch_size
        self.with_modalities = with_modalities
        self.id_column = self.spec.schema.id_column
        self.columns = self.spec.schema.source_columns()
        if self.id_column and self.id_column not in self.columns:
            self.columns = self.columns + [self.id_column]
        self.metadata = {
            "deepsets.model_uri": source.uri,
            "deepsets.model_version": source.version,
            "deepsets.weights_sha256": source.weights_sha256,
            "deepsets.tower": source.tower or "",
        }

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Ray Data entry point: a batch of runs in (``run``: a JSON list of fragment dicts, see
        :func:`deepsets.features.fragments.plan_runs`), one summary row per fragment out.

        A bad-data error is returned in the ``error`` field of the fragment it stopped (not
        raised), so the driver can stop the job with the message instead of a remote traceback;
        the fragments of the run after it are not reported (the driver stops at the error).
        """
        rows: List[dict] = []
        for text in batch["run"]:
            run = [Fragment.from_dict(d) for d in json.loads(str(text))]
            done: List[dict] = []
            started = time.time()  # wall clock: the driver compares fragments across workers
            try:
                self.embed_run(run, done)
            except (DataError, ValueError, OSError) as err:
                failed = run[len(done)]
                done.append(
                    {
                        "name": failed.name,
                        "rows_in": failed.rows,
                        "rows_out": 0,
                        "rows_rejected": 0,
                        "error": str(err),
                        "started_at": done[-1]["finished_at"] if done else started,
                        "finished_at": time.time(),
                    }
                )
            rows.extend({**r, "node_id": self.node_id} for r in done)
        return {k: np.array([r[k] for r in rows]) for k in rows[0]}

    def _forward(self, features) -> Dict[str, np.ndarray]:
        if not self.with_modalities:
            return {"embedding": outputs_of(self.model, features, ("fused",), self.device)["fused"].numpy()}  # (B, D)
        out = outputs_of(self.model, features, ("fused", "vectors", "present"), self.device)
        vectors, present = out["vectors"].numpy(), out["present"].numpy()  # (B, M, D), (B, M)
        out = {"embedding": out["fused"].numpy()}  # (B, D)
        for m, name in enumerate(self.model.names):
            out[f"vector_{name}"] = np.where(present[:, m, None], vectors[:, m], 0.0)  # (B, D), zeros where absent
            out[f"present_{name}"] = present[:, m]  # (B,)
        return out

    def _output_table(
        self, fragment: Fragment, table: pa.Table, row_base: int, kept: np.ndarray, values: Dict[str, np.ndarray]
    ) -> pa.Table:
        columns = {
            SOURCE_FILE: pa.array([fragment.path] * kept.size, pa.string()),
            SOURCE_ROW: pa.array(row_base + kept, pa.int64()),
        }
        if self.id_column:
            columns[self.id_column] = _ids(table.column(self.id_column).take(pa.array(kept)))
        for name, array in values.items():
            columns[name] = _fixed_list(array) if array.ndim == 2 else pa.array(array)
        return pa.table(columns)

    def _rejects_table(self, fragment: Fragment, table: pa.Table, row_base: int, rejected: List[tuple]) -> pa.Table:
        parts = []
        for positions, column, reason in rejected:
            part = table.take(pa.array(positions))
            part = part.append_column(SOURCE_FILE, pa.array([fragment.path] * positions.size, pa.string()))
            part = part.append_column(SOURCE_ROW, pa.array(row_base + positions, pa.int64()))
            part = part.append_column(REJECT_COLUMN, pa.array([column] * positions.size, pa.string()))
            parts.append(part.append_column(REJECT_REASON, pa.array([reason] * positions.size, pa.string())))
        return pa.concat_tables(parts, promote_options="permissive")

    def embed_run(self, run: List[Fragment], done: List[dict]) -> None:
        """Embed a run's fragments from one decode pass, committing each fragment's files as it ends.

        Args:
            run: contiguous fragments of one file.
            done: each finished fragment's counts are appended here, in order (so a caller
                that catches an error knows which fragment it stopped).

        Raises:
            DataError: for problems that are not about single rows (file, column named).
        """
        pieces = itertools.groupby(
            read_run(run, self.columns, self.batch_size), key=lambda piece: piece[0]
        )  # by fragment
        pending = next(pieces, None)  # (fragment, its pieces): the next fragment that has rows
        output = None
        try:
            for fragment in run:
                output = _FragmentOutput(self, fragment)
                if pending is not None and pending[0] == fragment:  # a fragment without rows has no pieces
                    for _, row_base, table in pending[1]:
                        output.add(row_base, table)
                    pending = next(pieces, None)
                done.append(output.finish())
                release_memory()
        finally:
            if output is not None:
                output.part.discard()

    def _empty_output(self, fragment: Fragment) -> pa.Table:
        """The output table with no rows (its schema from a zero-row forward pass)."""
        empty = open_parquet(fragment.path).schema_arrow.empty_table().select(self.columns)
        features = self.spec.transform(empty, with_ids=False)
        return self._output_table(fragment, empty, 0, np.zeros(0, dtype=np.int64), self._forward(features))
