"""One output file of an embedding job, written so that it appears whole or not at all.

    part = PartFile(storage.join(out, "embeddings", name))
    part.write(table, metadata)      # any number of times (same schema)
    part.commit()                    # now it exists, complete
    part.discard()                   # in a finally: removes what an unfinished write left

Locally the rows stream into a hidden ``.<name>.tmp-<pid>`` beside the target (Arrow and polars
skip it when reading the folder), which is synced and renamed into place, and the folder
synced. On object storage (a URI) there is no rename: the rows go to memory and ``commit``
is one PUT of the finished object (a part holds one fragment, ``--fragment-rows`` rows).
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from deepsets.features import storage


class PartFile:
    """A Parquet file made visible only by :meth:`commit`.

    Args:
        final: where the finished file goes (a local path or a URI).
    """

    def __init__(self, final: str) -> None:
        self.final = final
        self.remote = storage.is_uri(final)
        self.tmp = None if self.remote else os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.tmp-{os.getpid()}")
        self.sink: Optional[pa.BufferOutputStream] = pa.BufferOutputStream() if self.remote else None
        self.writer: Optional[pq.ParquetWriter] = None
        self.rows = 0

    def write(self, table: pa.Table, metadata: Dict[str, str]) -> None:
        """Append ``table`` (the first call fixes the schema, with ``metadata`` attached)."""
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.sink if self.remote else self.tmp, table.schema.with_metadata(metadata))
        self.writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> None:
        """Make the file appear, complete (a rename, or one PUT).

        Raises:
            ValueError: when nothing was written (a part always has a schema).
        """
        if self.writer is None:
            raise ValueError(f"{self.final}: nothing written")
        self.writer.close()
        self.writer = None
        if self.remote:
            storage.write_bytes(self.final, self.sink.getvalue().to_pybytes())
            self.sink = None
            return
        storage.replace_durably(self.tmp, self.final)

    def discard(self) -> None:
        """Drop an unfinished write (nothing to do after :meth:`commit`)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.tmp is not None and os.path.exists(self.tmp):
            os.unlink(self.tmp)
        self.sink = None
