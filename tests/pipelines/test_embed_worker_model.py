"""An embed actor's model: rebuilt from the driver's payload in a fresh process that never
imports MLflow, and the same model as the driver's."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
import torch

from deepsets.pipelines.models.source import load_model_source
from tests.pipelines.saved_models import save_model

LOAD_IN_A_FRESH_PROCESS = textwrap.dedent("""
    import pickle, sys
    import pyarrow.parquet as pq
    import torch
    from deepsets.pipelines.embedding.worker import load_model

    payload_file, rows_file, out_file = sys.argv[1:]
    with open(payload_file, "rb") as handle:
        source, model = load_model(pickle.load(handle), "cpu")
    print("loading imported:", "mlflow" if "mlflow" in sys.modules else "-")
    batch = source.input_spec.transform(pq.read_table(rows_file), with_ids=False)
    with torch.no_grad():
        torch.save(model(batch).fused, out_file)
    print("embedding imported:", "mlflow" if "mlflow" in sys.modules else "-")
""")


def _embed_in_a_fresh_process(tmp_path, payload: dict, rows) -> tuple[list, torch.Tensor]:
    """Runs the actor's model loading in a new interpreter, then embeds ``rows``; returns the
    lines saying whether each step imported MLflow, and the fused vectors. (Pandas is not
    checked: pyarrow imports it whenever it builds an array from Python values, and Ray Data
    imports it in every actor.)"""
    (tmp_path / "payload.pkl").write_bytes(pickle.dumps(payload))
    pq.write_table(rows, tmp_path / "rows.parquet")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS]
        + [str(tmp_path / name) for name in ("payload.pkl", "rows.parquet", "fused.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-2:], torch.load(tmp_path / "fused.pt", weights_only=True)


@pytest.mark.parametrize(
    "settings, tower",
    [
        ({"dim": 8, "layers": 0, "heads": 2, "fusion": "deepset"}, None),
        (
            {
                "dim": 8,
                "layers": 0,
                "heads": 2,
                "fusion": "deepset",
                "task": "two_tower",
                "query_modalities": ["history", "tags"],
                "item_modalities": ["image", "title"],
            },
            "item",
        ),
    ],
    ids=["one-tower", "two-tower-item"],
)
def test_an_actor_loads_the_drivers_model_without_importing_mlflow(settings, tower, demo_spec, demo_data, tmp_path):
    (tmp_path / "checkpoint").mkdir()
    save_model(tmp_path / "checkpoint", demo_spec, settings, seed=5)
    source = load_model_source(str(tmp_path / "checkpoint")).with_tower(tower)
    rows = pq.read_table(next((demo_data / "valid").glob("*.parquet"))).slice(0, 40)
    imported, fused = _embed_in_a_fresh_process(tmp_path, source.payload(), rows)
    assert imported == ["loading imported: -", "embedding imported: -"]
    with torch.no_grad():
        expected = source.build()(source.input_spec.transform(rows, with_ids=False)).fused  # (40, 8)
    assert fused.shape == (40, 8)
    torch.testing.assert_close(fused, expected)
