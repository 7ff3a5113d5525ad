"""One worker trained in this process (``scaling.trainer = in_process``, what ``auto`` picks for
one worker without a Ray address): the same model as Ray Train's, its checkpoints kept as Ray
Train keeps them, failures and resumes, object storage."""

from __future__ import annotations

import uuid

import mlflow
import pytest
import torch

from deepsets.features import storage
from deepsets.pipelines.config import RunConfig
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.models.checkpoint import load_checkpoint
from deepsets.pipelines.training.loop import FAIL_AT_EPOCH_ENV
from deepsets.pipelines.training.resume import checkpoint_dirs
from deepsets.pipelines.training.run import TrainingFailed, chosen_trainer, run_training
from tests.pipelines.test_train import config


def with_trainer(cfg: RunConfig, trainer: str, **scaling) -> RunConfig:
    return cfg.model_copy(update={"scaling": cfg.scaling.model_copy(update={"trainer": trainer, **scaling})})


def test_in_process_and_ray_train_train_the_same_model(ray_session, demo_data, tmp_path):
    """Same seed, data order, batches and steps: the two trainers differ only in where the
    worker runs, so their metrics and weights agree to float noise."""
    runs = {
        trainer: run_training(
            with_trainer(config(demo_data, tmp_path, trainer, workers=1, epochs=2), trainer), progress=False
        )
        for trainer in ("in_process", "ray_train")
    }
    here, ray = runs["in_process"], runs["ray_train"]
    assert (here["trainer"], ray["trainer"]) == ("in_process", "ray_train")
    for key in ("train_loss", "valid_loss", "valid_auc", "train_rows_decoded", "epoch"):
        assert here["metrics"][key] == pytest.approx(ray["metrics"][key], abs=1e-6), key
    a, b = (load_checkpoint(run["checkpoint"])[0].model for run in (here, ray))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)
    # each run logged its model with the selected epoch's metrics
    mlflow.set_tracking_uri(here["tracking_uri"])
    logged = mlflow.get_logged_model(here["model_uri"].removeprefix("models:/"))
    assert {m.key for m in logged.metrics} >= {"valid_auc", "train_loss"}


def test_a_failure_in_process_keeps_the_checkpoints_and_resume_finishes_the_run(demo_data, tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_AT_EPOCH_ENV, "0")  # rank 0 raises after checkpointing epoch 1 on a first attempt
    cfg = config(demo_data, tmp_path, "fails-here", workers=1, epochs=2)
    with pytest.raises(TrainingFailed) as failed:
        run_training(cfg, progress=False)
    message = str(failed.value)
    assert message.startswith("training failed (in process): injected failure after epoch 0")
    assert message.endswith(f"checkpoints so far are in {tmp_path / 'ray' / 'fails-here'} (continue with --resume)")
    resumed = run_training(cfg, resume=True, progress=False)
    assert resumed["epochs_done"] == 2 and resumed["epochs_this_run"] == 1
    client = mlflow.tracking.MlflowClient(resumed["tracking_uri"])
    assert [m.value for m in client.get_metric_history(resumed["run_id"], "resumed_at_epoch")] == [1.0]
    assert client.get_run(resumed["run_id"]).info.status == "FINISHED"


def test_a_run_resumes_only_with_the_trainer_it_started_with(ray_session, demo_data, tmp_path):
    run_training(config(demo_data, tmp_path, "started-here", workers=1, epochs=1), progress=False)
    on_ray = with_trainer(config(demo_data, tmp_path, "started-here", workers=1, epochs=2), "ray_train")
    with pytest.raises(JobError) as refused:
        run_training(on_ray, resume=True, progress=False)
    assert str(refused.value) == (
        "cannot resume run 'started-here' with trainer ray_train: it was trained in process; "
        'resume it with scaling.trainer = "in_process" (one worker, no --ray-address), or start a new run'
    )


def test_checkpoints_on_object_storage_are_written_kept_and_resumed(demo_data, tmp_path, s3_server):
    storage_path = f"s3://deepsets/in-process-{uuid.uuid4().hex[:8]}"
    cfg = config(demo_data, tmp_path, "on-s3", workers=1, epochs=1)
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"storage_path": storage_path})})
    first = run_training(cfg, progress=False)
    more = cfg.model_copy(update={"training": cfg.training.model_copy(update={"epochs": 3})})
    resumed = run_training(more, resume=True, progress=False)
    assert resumed["epochs_done"] == 3 and resumed["checkpoint"].startswith(f"{storage_path}/on-s3/checkpoint_")
    kept = checkpoint_dirs(storage.join(storage_path, "on-s3"))
    assert resumed["checkpoint"] in kept and first["checkpoint"] not in kept  # the first epoch's was deleted
    assert len(kept) <= 2  # the latest and the best (the same folder when the last epoch is the best)
    state, _, _, _ = load_checkpoint(resumed["checkpoint"])
    assert state.epoch + 1 == resumed["selected"]["epoch"]


def test_auto_picks_in_process_for_one_local_worker_only(demo_data, tmp_path):
    one = config(demo_data, tmp_path, "x", workers=1)
    two = config(demo_data, tmp_path, "x", workers=2)
    assert chosen_trainer(one, None, ()) == "in_process"
    assert chosen_trainer(one, "ray://head:10001", ()) == "ray_train"
    assert chosen_trainer(one, None, [object()]) == "ray_train"  # deepsets tune's callbacks
    assert chosen_trainer(two, None, ()) == "ray_train"
    assert chosen_trainer(with_trainer(one, "ray_train"), None, ()) == "ray_train"
    with pytest.raises(JobError, match="not on the Ray cluster at ray://head:10001: drop --ray-address"):
        chosen_trainer(with_trainer(one, "in_process"), "ray://head:10001", ())
    with pytest.raises(JobError, match="deepsets tune trains each trial on Ray Train"):
        chosen_trainer(with_trainer(one, "in_process"), None, [object()])


def test_in_process_with_several_workers_is_refused_in_the_config(demo_data):
    from deepsets.pipelines.config import parse_run_config
    from deepsets.pipelines.demo import default_demo_config
    from deepsets.pipelines.errors import ConfigError

    raw = default_demo_config(demo_data, workers=2).as_dict()
    raw["scaling"]["trainer"] = "in_process"
    with pytest.raises(
        ConfigError, match="run.toml: scaling.trainer: in_process trains one worker in the calling process"
    ):
        parse_run_config(raw, "run.toml")
