"""`deepsets init` from the command line: a table with every kind of column -> schema.toml and
run.toml -> `deepsets train --config run.toml` trains and logs a model."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deepsets.pipelines.cli import main
from deepsets.pipelines.config import load_run_config
from deepsets.pipelines.init.writing import available_cores
from deepsets.pipelines.models.checkpoint import load_checkpoint


def shop_table(n: int, first_id: int, seed: int) -> pa.Table:
    """Products with a photo vector, per-frame vectors, view durations, a view history, tags, a
    brand, a price and an age in days; ``bought`` depends on photo, history and brand, and
    ``bought_score`` leaks it."""
    rng = np.random.default_rng(seed)
    photo = rng.normal(size=(n, 8)).astype(np.float32)
    history = [rng.integers(1, 60, size=rng.integers(1, 30)).tolist() for _ in range(n)]
    brand = rng.choice(["acme", "globex", "initech"], n)
    score = photo[:, 0] + np.array([len(h) for h in history]) / 15 - 1 + (brand == "acme")
    bought = (rng.random(n) < 1 / (1 + np.exp(-score))).astype(np.int8)
    return pa.table(
        {
            "product_id": np.arange(n) + first_id,
            "photo": pa.array([p.tolist() if i % 7 else None for i, p in enumerate(photo)], pa.list_(pa.float32())),
            "frames": pa.array(
                [rng.normal(size=(rng.integers(1, 5), 4)).tolist() for _ in range(n)], pa.list_(pa.list_(pa.float32()))
            ),
            "durations": pa.array(
                [rng.exponential(size=rng.integers(1, 12)).tolist() for _ in range(n)], pa.list_(pa.float64())
            ),
            "history": pa.array(history, pa.list_(pa.int64())),
            "tags": pa.array(
                [
                    rng.choice(["new", "sale", "eco", "gift"], rng.integers(0, 3), replace=False).tolist()
                    for _ in range(n)
                ],
                pa.list_(pa.string()),
            ),
            "brand": pa.array(brand.tolist(), pa.string()),
            "price": rng.lognormal(3, 1, n),
            "age_days": rng.integers(0, 400, n),
            "bought": bought,
            "bought_score": np.clip(bought * 0.8 + rng.normal(0, 0.05, n), 0, 1),
        }
    )


def test_init_then_train_on_a_table_with_every_kind(ray_session, tmp_path, capsys, monkeypatch):
    for split, n, first, seed in (("train", 1200, 0, 0), ("valid", 300, 10_000, 1)):
        (tmp_path / split).mkdir()
        pq.write_table(shop_table(n, first, seed), tmp_path / split / "part-0.parquet", row_group_size=150)
    monkeypatch.chdir(tmp_path)  # the run's MLflow store is ./mlflow.db
    assert main(["init", "--input", "train", "--valid", "valid", "--label", "bought", "--out", "cfg"]) == 0
    printed = capsys.readouterr().out
    assert "bought_score" in printed and "its name is the label's plus 'score'" in printed
    assert (
        main(
            [
                "init",
                "--input",
                "train",
                "--valid",
                "valid",
                "--label",
                "bought",
                "--out",
                "cfg",
                "--overwrite",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kinds = {c["column"]: c["kind"] or c["role"] for c in summary["columns"]}
    assert kinds == {
        "product_id": "id",
        "photo": "dense",
        "frames": "dense_sequence",
        "durations": "dense_sequence",
        "history": "id_sequence",
        "tags": "id_set",
        "brand": "categorical",
        "price": "numeric",
        "age_days": "numeric",
        "bought": "label",
        "bought_score": "left_out",
    }
    assert summary["task"]["kind"] == "binary"
    cfg = load_run_config(tmp_path / "cfg" / "run.toml")  # the loader reads it as written
    assert cfg.data.train == (str(tmp_path / "train"),) and cfg.data.valid == (str(tmp_path / "valid"),)
    assert cfg.data.label_columns == ("bought",) and cfg.schema_.path == str(tmp_path / "cfg" / "schema.toml")
    assert cfg.scaling.workers == 1 and cfg.scaling.cpus_per_worker == available_cores()  # trained in process

    assert (
        main(
            [
                "train",
                "--config",
                "cfg/run.toml",
                "--set",
                "training.epochs=1",
                "--set",
                "tracking.run_name=from-init",
                "--json",
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        trained["trainer"] == "in_process"
        and trained["epochs_done"] == 1
        and trained["model_uri"].startswith("models:/")
        and 0.0 <= trained["metrics"]["valid_auc"] <= 1.0
    )
    _, spec, _, _ = load_checkpoint(trained["checkpoint"])
    assert {m.name: m.kind for m in spec.schema.modality} == {
        "photo": "dense",
        "frames": "dense_sequence",
        "durations": "dense_sequence",
        "history": "id_sequence",
        "tags": "id_set",
        "brand": "categorical",
        "numbers": "numeric",
    }
    assert spec.schema.id_column == "product_id"


def test_a_ragged_vector_column_is_one_error_line_naming_file_column_and_rows(tmp_path, capsys):
    frames = [[[1.0, 2.0]] * 3 for _ in range(100)]
    frames[42] = [[1.0, 2.0], [1.0, 2.0, 3.0]]
    pq.write_table(
        pa.table({"frames": pa.array(frames, pa.list_(pa.list_(pa.float32()))), "y": np.arange(100) % 2}),
        tmp_path / "t.parquet",
    )
    assert main(["init", "--input", str(tmp_path / "t.parquet"), "--label", "y", "--out", str(tmp_path / "cfg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 't.parquet'}, column 'frames', row 42: "), err
    assert not (tmp_path / "cfg").exists()


def test_a_missing_label_is_one_error_line(tmp_path, capsys):
    pq.write_table(pa.table({"x": np.arange(10) * 0.5}), tmp_path / "t.parquet")
    assert main(["init", "--input", str(tmp_path / "t.parquet"), "--label", "clicked", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "column 'clicked': --label column missing (file has: x)" in err[0]


def test_rows_training_would_refuse_are_printed_as_warnings(tmp_path, capsys):
    photo = np.random.default_rng(0).normal(size=(100, 3)).tolist()
    photo[7][0] = float("nan")
    pq.write_table(
        pa.table({"photo": pa.array(photo, pa.list_(pa.float32())), "y": np.arange(100) % 2}), tmp_path / "t.parquet"
    )
    assert main(["init", "--input", str(tmp_path / "t.parquet"), "--label", "y", "--out", str(tmp_path / "cfg")]) == 0
    out = capsys.readouterr().out
    assert (
        f"warning: column 'photo': 1 rows hold NaN, infinite or null floats, which training refuses (first: {tmp_path / 't.parquet'}, row 7)"
        in out
    )
    assert "# WARNING: 1 rows hold NaN" in (tmp_path / "cfg" / "schema.toml").read_text()
