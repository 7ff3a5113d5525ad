"""The ablation table says how it is sorted and what its signs mean."""

import math

from deepsets.pipelines.ablation.report import markdown_table


def _summary() -> dict:
    table = []
    for method, deltas in {
        "loo": {"a": 0.01, "b": 0.20, "c": -0.03},
        "shapley": {"a": 0.02, "b": 0.15, "c": -0.01},
    }.items():
        table += [
            {"method": method, "modality": m, "delta": d, "low": d - 0.01, "high": d + 0.01} for m, d in deltas.items()
        ]
    return {
        "model_uri": "models:/m-1",
        "rows": 100,
        "metric": "roc_auc",
        "full": 0.8,
        "empty": 0.5,
        "bootstrap": 10,
        "methods": ["loo", "shapley"],
        "modalities": ["a", "b", "c"],
        "table": table,
    }


def test_rows_follow_the_first_column_largest_first_and_the_legend_says_so():
    text = markdown_table(_summary())
    rows = [
        line.split("|")[1].strip()
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| modality")
    ]
    assert rows == ["b", "a", "c"]
    assert "sorted by the loo column, largest first" in text
    assert "Positive means the modality helps" in text and "shapley: its average contribution" in text
    assert "| c | -0.0300 [-0.0400, -0.0200] | -0.0100 [-0.0200, +0.0000] |" in text


def test_a_missing_interval_is_left_out():
    summary = _summary()
    summary["table"][0].update(low=math.nan, high=math.nan)
    assert "| a | +0.0100 | +0.0200 [+0.0100, +0.0300] |" in markdown_table(summary)


def test_per_row_values_are_keyed_by_the_inputs_id_column_or_the_row_position(tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from deepsets.pipelines.ablation.report import write_outputs

    phi = np.array([[0.1, 0.2, -0.3], [0.0, 0.5, 0.1]])  # (N, M)
    per_row = {
        "ids": np.array([7, 9]),
        "phi": phi,
        "full": np.array([0.9, 0.8]),
        "empty": np.array([0.9, 0.2]),
        "names": ["a", "b", "c"],
    }
    for id_column, expected in [("user_id", "user_id"), ("row", "row"), ("score_all", "score_all_id")]:
        files = write_outputs(tmp_path / id_column, _summary(), {**per_row, "id_column": id_column})
        table = pq.read_table(files["per_row"])
        assert table.column_names == [expected, "score_all", "score_none", "shapley_a", "shapley_b", "shapley_c"]
        assert table.column(expected).to_pylist() == [7, 9] and table.column("shapley_b").to_pylist() == [0.2, 0.5]
