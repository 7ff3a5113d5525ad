"""One output file of an embedding job, written so that it appears whole or not at all.

    part = PartFile(storage.join(out, "embeddings", name))
    part.write(table, metadata)      # any number of times (same schema)
    part.commit()                    # now it exists, complete
    part.discard()                   # in a finally: removes what an unfinished write left

Locally the rows stream into a hidden ``.<name>.tmp-<pid>`` beside the target (Arrow and polars
skip it when reading the folder), which is synced and renamed into place, and the folder
synced. On object storage (a URI) there is no rename: the rows go to memory and ``commit``
is one PUT of the finished object (a part holds one fragment, ``--fragment-rows`` rows).

    meta = read_footer(part.final)   # its footer; CorruptPart when the bytes do not parse
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from deepsets.features import storage


class CorruptPart(ValueError):
    """A file whose bytes are not a readable Parquet footer."""


def read_footer(path: str) -> pq.FileMetaData:
    """A Parquet file's footer, local or on object storage, telling a corrupt file from a
    failed read: the footer's bytes are fetched first (a read that fails, such as a network
    error or a timeout, raises its OSError unchanged), then parsed in memory, where only the
    bytes themselves can be wrong.

    Raises:
        CorruptPart: the bytes are not a Parquet footer (too short, no magic bytes, an
            unparsable footer), naming the file.
        OSError: the file could not be read (missing, unreachable, refused).
    """
    data = _footer_bytes(path)
    try:
        return pq.read_metadata(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as err:  # parsing bytes in memory: nothing here is I/O
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptPart(f"{storage.name_of(path)}: {first}") from None


def _footer_bytes(path: str) -> bytes:
    """What a Parquet reader needs to parse the footer of ``path``: ``PAR1``, the footer, its
    length and ``PAR1`` (two reads at the file's end). A file too short or without the magic
    bytes at its end comes back as its last bytes, which do not parse."""
    store, inner = storage.filesystem(path)
    with store.open_input_file(inner) as handle:
        size = handle.size()
        tail = handle.read_at(min(size, 8), max(0, size - 8))
        length = int.from_bytes(tail[:4], "little") if len(tail) == 8 else -1
        if tail[4:] != b"PAR1" or not 0 < length <= size - 12:
            return tail
        return b"PAR1" + handle.read_at(length + 8, size - 8 - length)


class PartFile:
    """A Parquet file made visible only by :meth:`commit`.

    Args:
        final: where the finished file goes (a local path or a URI).
    """

    def __init__(self, final: str) -> None:
        self.final = final
        self.remote = storage.is_uri(final)
        self.tmp = (
            None
            if self.remote
            else os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.tmp-{os.getpid()}")
        )
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
