"""Pairs a query must not be shown (a user's history): read from Parquet, keyed by query id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from deepsets.features.errors import DataError
from deepsets.features.files import resolve_inputs


@dataclass
class Exclusions:
    """Index positions each query id must not get back."""

    positions: Dict[object, np.ndarray] = field(default_factory=dict)
    pairs: int = 0
    unknown_items: int = 0  # pairs whose item is not in the index (nothing to drop)

    def of(self, query_id) -> np.ndarray:
        return self.positions.get(query_id, _NONE)

    def summary(self) -> dict:
        return {"pairs": self.pairs, "queries": len(self.positions), "unknown_items": self.unknown_items}


_NONE = np.zeros(0, np.int64)


def read_exclusions(
    path: str, query_column: str, item_column: str, query_type: pa.DataType, item_ids: pa.Array
) -> Exclusions:
    """The (query id, item id) pairs of the Parquet at ``path``, mapped to index positions.

    Args:
        path: a Parquet file, folder or glob.
        query_column: the query-id column in those files.
        item_column: the item-id column in those files.
        query_type: the query ids' Arrow type in the query embeddings.
        item_ids: the item id of each index position.

    Raises:
        DataError: no such files, a missing column, or ids that do not convert to the
            embeddings' id types (file and column named).
    """
    items = pl.DataFrame({"item": pl.Series(item_ids), "position": np.arange(len(item_ids), dtype=np.int64)})
    frames = []
    for file in resolve_inputs(path):
        names = pl.read_parquet_schema(file)
        missing = [c for c in (query_column, item_column) if c not in names]
        if missing:
            raise DataError(
                f"--exclude: no column {missing[0]!r} (expected the query id column {query_column!r} and the item id "
                f"column {item_column!r}; --exclude-columns names others)",
                file=file,
                column=missing[0],
            )
        frame = pl.read_parquet(file, columns=[query_column, item_column])
        frames.append(
            _cast(frame, query_column, pl.from_arrow(pa.array([], query_type)).dtype, file)
            .pipe(_cast, item_column, items["item"].dtype, file)
            .rename({query_column: "query", item_column: "item"})
        )
    pairs = pl.concat(frames).drop_nulls().unique()
    joined = pairs.join(items, on="item", how="inner")
    found = Exclusions(pairs=pairs.height, unknown_items=pairs.height - joined.height)
    for query, positions in joined.group_by("query").agg(pl.col("position")).iter_rows():
        found.positions[query] = np.sort(np.asarray(positions, dtype=np.int64))
    return found


def _cast(frame: pl.DataFrame, column: str, dtype: pl.DataType, file: str) -> pl.DataFrame:
    try:
        return frame.with_columns(pl.col(column).cast(dtype, strict=True))
    except pl.exceptions.PolarsError as err:
        raise DataError(
            f"--exclude: ids of type {frame[column].dtype} do not convert to the embeddings' id type {dtype} ({err})",
            file=file,
            column=column,
        ) from None


def exclusion_columns(value: str, query_column: str, item_column: str) -> Sequence[str]:
    """``--exclude-columns Q,I`` or the embeddings' own id column names."""
    if value:
        names = [v.strip() for v in value.split(",")]
        if len(names) != 2 or not all(names):
            raise DataError(f"--exclude-columns: expected QUERY_COLUMN,ITEM_COLUMN (found {value!r})")
        return names
    if query_column == item_column:
        raise DataError(
            f"--exclude: queries and items both name their ids {query_column!r}: give --exclude-columns QUERY_COLUMN,ITEM_COLUMN"
        )
    return query_column, item_column
