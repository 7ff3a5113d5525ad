"""The output folder of a finished ``deepsets embed`` job, read as ids and vectors.

A folder holds ``embeddings/part-*.parquet`` with ``source_file``, ``source_row``, the id
column, ``embedding`` (a fixed-size list of float32) and, with ``--with-modalities``,
``vector_<m>`` / ``present_<m>``; ``_manifest.json`` names the model and the tower, and
``_SUCCESS.json`` says the job finished. The folder may be local or on object storage
(``s3://bucket/prefix``): everything is read through :mod:`deepsets.features.storage`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Iterator, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deepsets.features import storage
from deepsets.features.errors import DataError
from deepsets.pipelines.embedding.layout import EMBEDDINGS, MANIFEST, SOURCE_FILE, SOURCE_ROW, SUCCESS
from deepsets.pipelines.errors import JobError

NOT_ID = (SOURCE_FILE, SOURCE_ROW, "embedding")
NOT_ID_PREFIXES = ("vector_", "present_")


@dataclass(frozen=True)
class VectorBatch:
    """Rows of one part: ids, vectors and which rows have a usable vector."""

    part: str  # the part's path or URI
    first_row: int  # the part's row number of the first row here
    ids: pa.Array
    vectors: np.ndarray  # (n, D) float32; zeros where not usable
    usable: np.ndarray  # (n,) bool: a vector with D finite values
    problem: np.ndarray  # (n,) object: why a row is not usable ("" when it is)


@dataclass(frozen=True)
class EmbeddingFolder:
    """A finished embed job's output, checked on open."""

    path: str  # absolute, or a URI
    parts: List[str]
    id_column: str
    id_type: pa.DataType
    dim: int
    tower: Optional[str]
    weights_sha256: str
    rows: int

    @classmethod
    def open(cls, path: str, option: str) -> "EmbeddingFolder":
        """Open the ``--output`` folder of ``deepsets embed`` (or its ``embeddings/`` folder).

        Args:
            path: the folder.
            option: the command-line option that named it, for messages (``--items``).

        Raises:
            DataError: no such folder, no parts, no id column or no embedding column.
            JobError: the embed job did not finish.
        """
        root = storage.absolute(path).rstrip("/")
        if storage.name_of(root) == EMBEDDINGS and not storage.is_dir(storage.join(root, EMBEDDINGS)):
            root = root.rsplit("/", 1)[0]
        if not storage.is_dir(root):
            raise DataError(f"{option}: no such folder (expected the --output folder of deepsets embed)", file=root)
        if not storage.exists(storage.join(root, SUCCESS)):
            raise JobError(
                f"{option} {root}: the embed job there did not finish (no {SUCCESS}): run it again with --resume"
            )
        folder = storage.join(root, EMBEDDINGS)
        parts = [
            storage.join(folder, name)
            for name, is_dir in storage.children(folder)
            if not is_dir and fnmatch.fnmatchcase(name, "part-*.parquet")
        ]
        if not parts:
            raise DataError(f"{option}: no embedding parts in {EMBEDDINGS}/", file=root)
        manifest_path = storage.join(root, MANIFEST)
        manifest = json.loads(storage.read_text(manifest_path)) if storage.exists(manifest_path) else {}
        schema = _read_schema(parts[0])
        if "embedding" not in schema.names:
            raise DataError(f"{option}: no 'embedding' column (found {schema.names})", file=str(parts[0]))
        ids = [n for n in schema.names if n not in NOT_ID and not n.startswith(NOT_ID_PREFIXES)]
        if len(ids) != 1:
            raise DataError(
                f"{option}: the rows carry no id column (found {schema.names}); declare `id_column` in the schema "
                "the model was trained with, so that results name their rows",
                file=str(parts[0]),
            )
        kind = schema.field("embedding").type
        if not (pa.types.is_fixed_size_list(kind) and pa.types.is_floating(kind.value_type)):
            raise DataError(
                f"{option}: 'embedding' must be a fixed-size list of floats (found {kind})",
                file=str(parts[0]),
                column="embedding",
            )
        rows = sum(_read_metadata(p).num_rows for p in parts)
        return cls(
            root,
            parts,
            ids[0],
            schema.field(ids[0]).type,
            kind.list_size,
            manifest.get("tower"),
            manifest.get("weights_sha256", ""),
            rows,
        )

    def batches(self, batch_rows: int) -> Iterator[VectorBatch]:
        """Every row of every part, ``batch_rows`` at a time (memory follows ``batch_rows``)."""
        for part in self.parts:
            yield from self.batches_of(part, batch_rows)

    def batches_of(self, part: str, batch_rows: int) -> Iterator[VectorBatch]:
        """The rows of one part, ``batch_rows`` at a time."""
        first = 0
        store, inner = storage.filesystem(part)
        with store.open_input_file(inner) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(
                batch_size=batch_rows, columns=[self.id_column, "embedding"]
            ):
                vectors, usable, problem = _vectors(batch.column(1), self.dim)
                yield VectorBatch(part, first, batch.column(0), vectors, usable, problem)
                first += batch.num_rows

    def load(self) -> tuple[pa.Array, VectorBatch]:
        """All rows at once: ``(ids, batch)`` with the vectors of every part stacked."""
        found = list(self.batches(1 << 16))
        if not found:
            return pa.array([], self.id_type), VectorBatch(
                self.parts[0],
                0,
                pa.array([], self.id_type),
                np.zeros((0, self.dim), np.float32),
                np.zeros(0, bool),
                np.zeros(0, object),
            )
        ids = pa.concat_arrays([b.ids for b in found])
        stacked = VectorBatch(
            self.parts[0],
            0,
            ids,
            np.concatenate([b.vectors for b in found]),
            np.concatenate([b.usable for b in found]),
            np.concatenate([b.problem for b in found]),
        )
        return ids, stacked


def _read_schema(path: str) -> pa.Schema:
    store, inner = storage.filesystem(path)
    return pq.read_schema(inner, filesystem=store)


def _read_metadata(path: str) -> pq.FileMetaData:
    store, inner = storage.filesystem(path)
    return pq.read_metadata(inner, filesystem=store)


def _vectors(column: pa.Array, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed-size list column as (n, D) float32, usable rows, and each unusable row's reason."""
    n = len(column)
    values = (
        column.flatten() if column.null_count == 0 else column.fill_null(pa.scalar([0.0] * dim, column.type)).flatten()
    )
    vectors = np.array(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, dim)  # (n, D), writable
    problem = np.full(n, "", dtype=object)
    finite = np.isfinite(vectors).all(axis=1)  # (n,)
    problem[~finite] = "embedding has NaN or infinite values"
    if column.null_count:
        problem[column.is_null().to_numpy(zero_copy_only=False)] = "embedding is null"
    usable = problem == ""
    vectors[~usable] = 0.0
    return vectors, usable, problem
