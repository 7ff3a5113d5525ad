"""Mapping raw ids (ints or strings) to embedding-table indices: a fitted vocabulary or hashing.

Index layout of every table: ``0`` = padding (never produced), then

* vocabulary: ``1`` = out-of-vocabulary, ``2 + rank`` for the vocabulary entry of that rank
  (most frequent first, ties broken by value); table size ``len(vocab) + 2``.
* hashing: ``1 + hash(id) % hash_buckets``; table size ``hash_buckets + 1``. The hash is a
  fixed function (splitmix64 of the integer; FNV-1a 64 of the UTF-8 bytes of a string), so it
  is the same on every machine and version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deepsets.features.arrow_lists import is_list_type
from deepsets.features.errors import DataError

OOV_INDEX = 1
FIRST_VOCAB_INDEX = 2
LOOKUP_TABLE_MAX_ID = 1 << 22  # int vocabularies with ids below this use a dense lookup table


def id_type_of(t: pa.DataType) -> Optional[str]:
    """'int' or 'string' for an Arrow id type (dictionary types by their values), else None."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    return None


def row_id_type(path: str, t: pa.DataType, column: str) -> str:
    """'int' or 'string': the kind of a file's row ids (the schema's ``id_column``).

    Raises:
        DataError: for ids of another type (floats: what pandas writes for integers with nulls).
    """
    kind = id_type_of(t)
    if kind is None:
        hint = (
            " (pandas writes an integer column with nulls as floats: write the ids as integers, one for every row)"
            if pa.types.is_floating(t)
            else ""
        )
        raise DataError(f"row ids must be integers or strings, found {t}{hint}", file=path, column=column)
    return kind


def check_row_id_kind(path: str, arrow_schema: pa.Schema, column: Optional[str], seen: Dict[str, tuple]) -> None:
    """The row id column, where a file holds it, has one kind of id (int or string) in every
    file, as ``deepsets embed`` needs to write it; ``seen`` maps the column to the first file's
    ``(kind, path)`` across calls.

    Raises:
        DataError: naming the file and column: ids that are neither, or another kind than the first file's.
    """
    if not column or column not in arrow_schema.names or pa.types.is_null(arrow_schema.field(column).type):
        return
    kind = row_id_type(path, arrow_schema.field(column).type, column)
    first = seen.setdefault(column, (kind, path))
    if first[0] != kind:
        raise DataError(
            f"{kind} row ids here but {first[0]} row ids in {first[1]} (one kind of id per id column)",
            file=path,
            column=column,
        )


def column_id_type(t: pa.DataType) -> Optional[str]:
    """'int' or 'string' for an id column (a scalar or a list of ids); None for a null-typed
    column (no value at all) or a type that holds no ids."""
    if is_list_type(t):
        t = t.value_type
    return None if pa.types.is_null(t) else id_type_of(t)


def _plain(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if id_type_of(arr.type) == "string" and arr.type != pa.string():
        arr = arr.cast(pa.string())
    return arr


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Stateless 64-bit mix of int64 values (as uint64)."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fnv1a64(strings: pa.StringArray) -> np.ndarray:
    """FNV-1a 64 of each string's UTF-8 bytes, vectorized over strings (loops over byte position)."""
    strings = strings.cast(pa.string())
    n = len(strings)
    _, offsets_buf, data_buf = strings.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[strings.offset : strings.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], offsets[1:] - offsets[:-1]
    h = np.full(n, 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for j in range(int(lengths.max(initial=0))):
        active = np.nonzero(lengths > j)[0]
        h[active] = (h[active] ^ data[starts[active] + j].astype(np.uint64)) * prime
    return h


@dataclass
class IdMapper:
    """Maps a flat Arrow array of ids to int64 table indices.

    Args:
        id_type: 'int' or 'string' (what the training data held).
        vocab: fitted vocabulary, most frequent first; None when hashing.
        hash_buckets: number of hash buckets; None when using a vocabulary.
    """

    id_type: str
    vocab: Optional[List[Union[int, str]]] = None
    hash_buckets: Optional[int] = None

    def __post_init__(self) -> None:
        if (self.vocab is None) == (self.hash_buckets is None):
            raise ValueError("IdMapper needs exactly one of vocab or hash_buckets")
        self._lookup: Optional[np.ndarray] = None
        if self.vocab is not None:
            arrow_type = pa.int64() if self.id_type == "int" else pa.string()
            self._value_set = pa.array(self.vocab, type=arrow_type)
            small = (
                self.id_type == "int" and self.vocab and 0 <= min(self.vocab) and max(self.vocab) < LOOKUP_TABLE_MAX_ID
            )
            if small:
                largest = max(self.vocab)
                # Small non-negative int ids: a dense table lookup beats hashing each batch.
                self._lookup = np.full(largest + 2, OOV_INDEX, dtype=np.int64)  # last slot: ids > largest
                self._lookup[np.asarray(self.vocab, dtype=np.int64)] = np.arange(len(self.vocab)) + FIRST_VOCAB_INDEX

    @property
    def num_embeddings(self) -> int:
        """Rows of the embedding table, padding and OOV included."""
        if self.hash_buckets is not None:
            return self.hash_buckets + 1
        return len(self.vocab) + FIRST_VOCAB_INDEX

    def check(self, flat: pa.Array, column: str, row_of_element: Callable[[], np.ndarray]) -> pa.Array:
        """Validate raw ids: right type, no nulls, no negative integers.

        Args:
            flat: the ids.
            column: for the error message.
            row_of_element: gives the (N,) row number of each id, to name bad rows (called
                only when there is an error).

        Raises:
            DataError: naming column and rows.
        """
        found = id_type_of(flat.type)
        if found is None:
            raise DataError(f"expected int or string ids, found {flat.type}", column=column)
        if found != self.id_type:
            raise DataError(f"expected {self.id_type} ids (as in the training data), found {flat.type}", column=column)
        flat = _plain(flat)
        if flat.null_count:
            rows = np.unique(row_of_element()[~flat.is_valid().to_numpy(zero_copy_only=False)])
            raise DataError("null id (expected an int or string id)", column=column, rows=rows)
        if pa.types.is_uint64(flat.type) and len(flat) and pc.max(flat).as_py() > np.iinfo(np.int64).max:
            too_big = flat.to_numpy(zero_copy_only=False) > np.iinfo(np.int64).max
            rows = np.unique(row_of_element()[too_big])
            raise DataError("integer id above 2**63-1 (expected ids that fit in int64)", column=column, rows=rows)
        if found == "int" and len(flat) and pc.min(flat).as_py() < 0:
            negative = flat.to_numpy(zero_copy_only=False) < 0
            rows = np.unique(row_of_element()[negative])
            raise DataError("negative integer id (expected ids >= 0)", column=column, rows=rows)
        return flat

    def map(self, flat: pa.Array) -> tuple[np.ndarray, int]:
        """Indices (N,) int64 and the number of out-of-vocabulary ids (0 when hashing)."""
        if len(flat) == 0:
            return np.zeros(0, dtype=np.int64), 0
        if self.hash_buckets is not None:
            if self.id_type == "int":
                h = splitmix64(flat.cast(pa.int64()).to_numpy(zero_copy_only=False))
            else:
                encoded = pc.dictionary_encode(flat)
                h = fnv1a64(encoded.dictionary)[encoded.indices.to_numpy(zero_copy_only=False)]
            return (h % np.uint64(self.hash_buckets)).astype(np.int64) + 1, 0
        if self.id_type == "int":
            flat = flat.cast(pa.int64())
        if self._lookup is not None:
            ids = flat.to_numpy(zero_copy_only=False)  # (N,), checked non-negative
            idx = self._lookup[np.minimum(ids, self._lookup.size - 1)]
            return idx, int((idx == OOV_INDEX).sum())
        position = pc.index_in(flat, value_set=self._value_set)
        oov = position.null_count
        idx = position.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) + FIRST_VOCAB_INDEX
        if oov:
            idx[idx == FIRST_VOCAB_INDEX - 1] = OOV_INDEX
        return idx, oov
