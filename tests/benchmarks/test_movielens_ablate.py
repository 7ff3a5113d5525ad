"""``benchmarks.movielens.ablate.checkpoints``: the ablation (and ``benchmarks.movielens.blend``)
reads the checkpoint of the epoch the run kept, the one the benchmark's figures are of."""

import json

import mlflow

from benchmarks.movielens.ablate import checkpoints


def two_checkpoints(work):
    run = work / "ray_results" / "two-tower-in_batch-s0-e5"
    saved = {}
    for name, epoch in (
        ("checkpoint_2026-01-01_00-00-01", 2),
        ("checkpoint_2026-01-01_00-00-02", 4),
    ):  # epochs 3 and 5 (from 1)
        (run / name).mkdir(parents=True)
        (run / name / "epoch.json").write_text(json.dumps({"epoch": epoch, "step": 10 * epoch}))
        saved[epoch + 1] = run / name
    return saved


def test_the_kept_epochs_checkpoint_is_read_not_the_last(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    saved = two_checkpoints(tmp_path)
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(
        client.create_experiment("movielens"),
        run_name="two-tower-in_batch-s0-e5",
        tags={"deepsets.selected_epoch": "3"},
    )
    client.set_terminated(run.info.run_id)
    assert checkpoints(tmp_path, "in_batch", 5) == {0: saved[3]}


def test_without_a_store_the_last_checkpoint_is_read(tmp_path, capsys):
    saved = two_checkpoints(tmp_path)
    assert checkpoints(tmp_path, "in_batch", 5) == {0: saved[5]}
    assert "the kept epoch is unknown; taking the last (epoch 5)" in capsys.readouterr().out
