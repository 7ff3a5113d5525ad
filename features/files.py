"""Finding input Parquet files and checking them against a schema before reading a row."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, List, Sequence, Union

import pyarrow as pa
import pyarrow.parquet as pq

from deepsets.features import storage
from deepsets.features.errors import DataError

Paths = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


def resolve_inputs(paths: Paths) -> List[str]:
    """Expand files, directories and globs into a sorted list of files.

    A directory contributes its ``*.parquet`` files (recursively); a file or glob match is
    taken as given, so a non-Parquet file named explicitly is reported, not skipped. URIs
    (``s3://bucket/prefix``, globs in them too) are listed through :mod:`deepsets.features.storage`.

    Raises:
        DataError: naming every path that matches nothing (up to five, then a count), or when
            nothing at all is found.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: List[str] = []
    problems: List[str] = []  # every bad path, so one run reports them all
    for item in items:
        text = os.fspath(item)
        try:
            files.extend(_expand_uri(text) if storage.is_uri(text) else _expand_local(storage.local_path(text)))
        except DataError as err:
            problems.append(str(err))
        except (OSError, ValueError) as err:  # a store that cannot be reached, a bucket that is not there
            problems.append(f"cannot list input '{text}': {str(err).splitlines()[0]}")
    if problems:
        more = f"; and {len(problems) - 5} more bad input paths" if len(problems) > 5 else ""
        raise DataError("; ".join(problems[:5]) + more)
    if not files:
        raise DataError("no input files given")
    return list(dict.fromkeys(files))


def _expand_glob(pattern: str) -> List[str]:
    """A glob's matches, local or on object storage."""
    found = storage.glob(pattern)
    if not found:
        raise DataError(f"no input files match '{pattern}'")
    return found


def _expand_local(text: str) -> List[str]:
    if os.path.isdir(text):
        found = sorted(str(p) for p in Path(text).rglob("*.parquet") if p.is_file())
        if not found:
            raise DataError(f"directory '{text}' holds no *.parquet files")
        return found
    if glob.has_magic(text):
        return _expand_glob(text)
    if os.path.isfile(text):
        return [text]
    raise DataError(f"input '{text}' does not exist")


def _expand_uri(text: str) -> List[str]:
    """The same rules on object storage, where a "directory" is a key prefix."""
    if glob.has_magic(text):
        return _expand_glob(text)
    if storage.is_file(text):
        return [text]
    if storage.is_dir(text):
        found = storage.files_under(text, ".parquet")
        if not found:
            raise DataError(f"'{text}' holds no *.parquet objects")
        return found
    raise DataError(f"input '{text}' does not exist")


STREAM_BUFFER_BYTES = 1 << 20
"""Read buffer per column of a streaming Parquet read (``buffer_size`` of ``pq.ParquetFile``):
without one, pyarrow reads a whole column chunk of the row group into memory at once."""


def open_parquet(path: str, pre_buffer: bool = True) -> pq.ParquetFile:
    """Open a Parquet file, turning "not Parquet" into a clear error.

    Args:
        path: the file.
        pre_buffer: let pyarrow read ahead whole column chunks (fast, but memory grows with
            the row groups read); streaming readers pass False, and then pages are read
            through a buffer of ``STREAM_BUFFER_BYTES`` per column, so memory follows the
            record batches decoded, not the row group (a 900k-row row group: +35 MB instead
            of +250 MB).

    Raises:
        DataError: naming the file when it is not a readable Parquet file.
    """
    try:
        store, inner = storage.filesystem(path)
        return pq.ParquetFile(
            inner, filesystem=store, pre_buffer=pre_buffer, buffer_size=0 if pre_buffer else STREAM_BUFFER_BYTES
        )
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, ValueError) as err:
        raise DataError(f"not a readable Parquet file ({err})", file=path) from None


def check_columns(path: str, arrow_schema: pa.Schema, modalities: Iterable, extra_columns: Sequence[str] = ()) -> None:
    """Every modality column exists with an accepted Arrow type; extra columns exist.

    Raises:
        DataError: naming file, column, expected and found type (the first problem found).
    """
    names = set(arrow_schema.names)
    for column in extra_columns:
        if column not in names:
            raise DataError(f"column missing (file has: {', '.join(arrow_schema.names)})", file=path, column=column)
    for m in modalities:
        for column in m.source_columns():
            if column not in names:
                raise DataError(
                    f"column missing for modality '{m.name}' (file has: {', '.join(arrow_schema.names)})",
                    file=path,
                    column=column,
                )
            found = arrow_schema.field(column).type
            if pa.types.is_null(found):  # a column with no value at all: every row missing
                continue
            if not m.accepts(column, found):
                raise DataError(
                    f"modality '{m.name}' ({m.kind}) expects {m.expected_type()}, found {found}",
                    file=path,
                    column=column,
                )
