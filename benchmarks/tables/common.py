"""What every table of the suite shares: its description, the past-only history lists, and
writing the three splits as Parquet.

A table is built by its module's ``build(out, max_rows)`` (one module per table), which writes
``out/{train,valid,test}/part-00000.parquet`` and returns a :class:`TableInfo`. Every row has an
integer ``row_id`` (the id column), the label, flat columns (numbers and strings, null where
missing) and list columns; an empty list means "no history", never a filled-in value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SPLITS = ("train", "valid", "test")
ID_COLUMN = "row_id"
ROW_GROUP_ROWS = 2048
"""Small row groups, so 2 training workers each get a share of even a subsampled table."""


@dataclass(frozen=True)
class TableInfo:
    """One built table.

    Args:
        name: the table's name in the suite (``--tables``).
        label: the target column.
        task: ``"binary"`` (scored by AUC) or ``"regression"`` (RMSE).
        rows: rows written per split.
        source: where the data comes from (R package and item).
        split: how rows were put into train / valid / test.
    """

    name: str
    label: str
    task: str
    rows: dict[str, int]
    source: str
    split: str
    lists: tuple = field(default_factory=tuple)


def past_windows(entity: np.ndarray, time: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """For each event, the earlier events of the same entity: those with a strictly smaller
    ``time`` (events at the same time are never each other's history), the last ``max_len``.

    Args:
        entity: ``(N,)`` non-negative integer entity codes, ``-1`` for an event with no entity.
        time: ``(N,)`` integer times.
        max_len: the most earlier events kept (the latest ones).

    Returns:
        ``(order, windows)``: ``order`` sorts the events by (entity, time); ``windows`` is
        ``(N, 2)``, for event ``i`` (in the input order) the ``[start, end)`` positions of its
        history in ``order``, empty for an event with no entity.

    Raises:
        ValueError: when the arrays differ in length or ``max_len`` is below 1.
    """
    if entity.shape != time.shape or max_len < 1:
        raise ValueError(
            f"entity and time must have one shape (got {entity.shape}, {time.shape}) and max_len >= 1 (got {max_len})"
        )
    _, time_rank = np.unique(time, return_inverse=True)
    key = entity.astype(np.int64) * (int(time_rank.max(initial=0)) + 1) + time_rank  # (N,) sorts as (entity, time)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    end = np.searchsorted(sorted_key, key, side="left")  # the first event of the entity at its own time
    group_start = np.searchsorted(sorted_key, key - time_rank, side="left")  # the entity's first event
    start = np.maximum(group_start, end - max_len)
    windows = np.stack([start, end], axis=1)  # (N, 2)
    windows[entity < 0] = 0
    return order, windows


def window_lists(
    values: pa.Array, order: np.ndarray, windows: np.ndarray, null_rows: np.ndarray | None = None
) -> pa.ListArray:
    """A list column: row ``i`` holds ``values[order[start_i:end_i]]`` (oldest first).

    Args:
        values: ``(N,)`` per-event values, any Arrow type (a fixed-size list for vectors).
        order, windows: from :func:`past_windows` over the same events.
        null_rows: ``(N,)`` bool, rows whose list is null (no entity at all).
    """
    lengths = windows[:, 1] - windows[:, 0]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    positions = np.repeat(windows[:, 0] - offsets[:-1], lengths) + np.arange(offsets[-1])  # (total,)
    taken = values.take(pa.array(order[positions]))
    mask = None if null_rows is None else pa.array(null_rows)
    return pa.ListArray.from_arrays(pa.array(offsets), taken, mask=mask)


def vectors(columns: dict[str, np.ndarray]) -> pa.FixedSizeListArray:
    """``(N,)`` float columns as one Arrow array of ``len(columns)``-float vectors (a history's
    elements); a NaN would be refused by the reader, so the caller fills it first.

    Raises:
        ValueError: naming the column when a value is not finite.
    """
    for name, column in columns.items():
        if not np.isfinite(column).all():
            raise ValueError(
                f"history vector component {name!r} has {int((~np.isfinite(column)).sum())} non-finite values: fill them first"
            )
    stacked = np.stack(list(columns.values()), axis=1).astype(np.float32)  # (N, K)
    return pa.FixedSizeListArray.from_arrays(pa.array(stacked.reshape(-1)), stacked.shape[1])


def write_splits(table: pa.Table, split: np.ndarray, out: Path, max_rows: int | None, seed: int = 0) -> dict[str, int]:
    """Write each split's rows to ``out/<split>/part-00000.parquet``.

    Args:
        table: every row of the table (histories already computed on all of it).
        split: ``(N,)`` the split name of each row.
        max_rows: at most this many rows per split, a seeded uniform sample kept in row order
            (``None``: all).

    Returns:
        Rows written per split.

    Raises:
        ValueError: when a split would be empty.
    """
    rng = np.random.default_rng(seed)
    written = {}
    for name in SPLITS:
        rows = np.flatnonzero(split == name)
        if max_rows is not None and len(rows) > max_rows:
            rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
        if len(rows) == 0:
            raise ValueError(f"split {name!r} of {out.name} has no rows")
        (out / name).mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(rows)), out / name / "part-00000.parquet", row_group_size=ROW_GROUP_ROWS)
        written[name] = len(rows)
    return written


def codes(values: np.ndarray) -> np.ndarray:
    """``(N,)`` integer codes of ``values`` (object or numeric), ``-1`` where null."""
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values])
    out = np.full(len(values), -1, dtype=np.int64)
    if (~missing).any():
        _, out[~missing] = np.unique(values[~missing].astype(str), return_inverse=True)
    return out
