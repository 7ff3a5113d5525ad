"""One fragment's output files while its rows arrive: the embeddings part and its rejects.

    writer = FragmentWriter(out, fragment, id_column, metadata)
    writer.reject(table, row_base, rejected)             # rows a check set aside
    writer.write(table, row_base, kept, values)          # the kept rows and the model's outputs
    counts = writer.finish()                             # rejects, then the part, appear whole
    writer.discard()                                     # in a finally: drops an unfinished part

The writer builds the output tables itself (``source_file``, ``source_row``, the id column, then
the model's values; the rejects keep the input's columns and add why), so the embedder hands
it rows and arrays only. File names come from :mod:`deepsets.pipelines.embedding.layout`.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from deepsets.features import storage
from deepsets.features.fragments import Fragment
from deepsets.pipelines.embedding.layout import (
    REJECT_COLUMN,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    part_path,
    rejects_path,
)
from deepsets.pipelines.embedding.parts import PartFile

Rejected = Tuple[np.ndarray, str, str]
"""``(positions in the table, column, reason)``: rows one check rejected."""


def fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    """(B, D) float32 -> fixed_size_list<float32>[D], the type of the ``embedding`` column."""
    values = np.ascontiguousarray(values, dtype=np.float32)  # (B, D)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def output_ids(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids as int64 or string, so every output file has the same id type (the job checked
    before any work that every input's ids are integers fitting int64, or strings)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64())
    if pa.types.is_large_string(column.type) or pa.types.is_string_view(column.type):
        return column.cast(pa.string())
    return column


class FragmentWriter:
    """The output of one fragment, committed by :meth:`finish` (rejects first: an existing part
    means the whole fragment is accounted for).

    Args:
        out_dir: the job's output folder.
        fragment: the fragment whose rows are written.
        id_column: the spec's id column, copied into the output (None: no ids).
        metadata: the job's part metadata (model URI, version, fingerprint, tower); the
            fragment's source file is added.
    """

    def __init__(self, out_dir: str, fragment: Fragment, id_column: Optional[str], metadata: Dict[str, str]) -> None:
        self.fragment, self.id_column = fragment, id_column
        self.started_at = time.time()
        self.part = PartFile(part_path(out_dir, fragment.name))
        self.reject_path = rejects_path(out_dir, fragment.name)
        storage.delete(self.reject_path)  # a leftover from an attempt that did not finish
        self.rejects: List[pa.Table] = []
        self.metadata = {**metadata, "deepsets.source_file": fragment.path}

    @property
    def has_rows(self) -> bool:
        """Whether anything went into the part yet (an empty part still needs its schema)."""
        return self.part.writer is not None

    def write(self, table: pa.Table, row_base: int, kept: np.ndarray, values: Dict[str, np.ndarray]) -> None:
        """Append the kept rows of ``table`` with the model's outputs to the part.

        Args:
            table: rows read from the fragment.
            row_base: the file row of the table's first row.
            kept: positions in ``table`` of the rows embedded, (B,).
            values: output column -> array, (B, D) for vectors (a fixed-size list column), (B,)
                for scalars; in the order the columns are written.
        """
        columns = {
            SOURCE_FILE: pa.array([self.fragment.path] * kept.size, pa.string()),
            SOURCE_ROW: pa.array(row_base + kept, pa.int64()),
        }
        if self.id_column:
            columns[self.id_column] = output_ids(table.column(self.id_column).take(pa.array(kept)))
        for name, array in values.items():
            columns[name] = fixed_list(array) if array.ndim == 2 else pa.array(array)
        self.part.write(pa.table(columns), self.metadata)

    def reject(self, table: pa.Table, row_base: int, rejected: List[Rejected]) -> None:
        """Set aside rows of ``table`` with the column and reason of the check each failed.

        Args:
            table: rows read from the fragment.
            row_base: the file row of the table's first row.
            rejected: ``(positions, column, reason)`` per failed check.
        """
        parts = []
        for positions, column, reason in rejected:
            part = table.take(pa.array(positions))
            part = part.append_column(SOURCE_FILE, pa.array([self.fragment.path] * positions.size, pa.string()))
            part = part.append_column(SOURCE_ROW, pa.array(row_base + positions, pa.int64()))
            part = part.append_column(REJECT_COLUMN, pa.array([column] * positions.size, pa.string()))
            parts.append(part.append_column(REJECT_REASON, pa.array([reason] * positions.size, pa.string())))
        if parts:
            self.rejects.append(pa.concat_tables(parts, promote_options="permissive"))

    def finish(self) -> dict:
        """Commit the fragment's files, rejects first; returns its counts.

        Raises:
            ValueError: when no table was written (write one with no rows for an empty fragment).
        """
        rows_out = self.part.rows
        if not self.has_rows:
            raise ValueError(
                f"{self.fragment.name}: no output table written (an empty fragment needs one with no rows)"
            )
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

    def discard(self) -> None:
        """Drop an unfinished part (nothing to do after :meth:`finish`)."""
        self.part.discard()
