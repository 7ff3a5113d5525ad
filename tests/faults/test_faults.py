"""Fault injection (the short form of ``python -m benchmarks.faults.injection``): jobs killed with SIGKILL,
a second job on one output, a truncated part, a training worker killed, a diverging run."""

import os
import random
import signal
import threading
import time

import mlflow
import pyarrow.parquet as pq
import pytest

from benchmarks.faults.embed_faults import (
    audit,
    embed_command,
    killed_embed_job,
    save_untrained_model,
    truncate_random_part,
)
from benchmarks.faults.processes import kill_job, session_processes, start
from benchmarks.faults.training_faults import checkpoint_registered, diverging_run_args
from deepsets.pipelines.cli import main
from deepsets.pipelines.embedding.job import parse_embed_config, run_embed
from deepsets.pipelines.errors import JobError


def embed(model, inputs, out, **options):
    cfg = parse_embed_config(
        model=str(model), inputs=[str(inputs)], output=str(out), fragment_rows=60, batch_size=32, workers=2, **options
    )
    return run_embed(cfg, progress=False)


@pytest.fixture(scope="module")
def model(demo_data, tmp_path_factory):
    return save_untrained_model(tmp_path_factory.mktemp("faults") / "model", demo_data, seed=0)


@pytest.fixture(scope="module")
def reference(ray_session, model, demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    embed(model, demo_data / "train", out)
    return out


def test_a_job_killed_at_a_worker_and_at_the_driver_then_resumed_writes_what_an_uninterrupted_run_writes(
    ray_session, model, reference, demo_data, tmp_path
):
    logs = tmp_path / "logs"
    logs.mkdir()
    killed = killed_embed_job(
        model, demo_data / "train", tmp_path / "out", 2, random.Random(3), logs, kinds=("worker", "driver")
    )
    assert (killed["worker_kills"], killed["driver_kills"]) == (1, 1)
    assert killed["summary"]["rows_out"] == 3000 and killed["summary"]["rows_rejected"] == 0
    found = audit(tmp_path / "out", reference, "item_id")
    assert found["rows_lost"] == 0 and found["duplicate_rows"] == 0 and found["mixed_model_parts"] == 0
    assert found["max_abs_diff"] <= 1e-5
    finished = (logs / "embed-2.log").read_text()  # the run that got to the end
    assert "Traceback" not in finished and "WARNING" not in finished, finished

    cut = truncate_random_part(tmp_path / "out", random.Random(0))
    resumed = embed(model, demo_data / "train", tmp_path / "out", resume=True)
    assert [r["part"] for r in resumed["parts_redone"]] == [cut] and "unreadable" in resumed["parts_redone"][0][
        "problem"
    ]
    assert resumed["rows_this_run"] == pq.read_metadata(tmp_path / "out" / "embeddings" / cut).num_rows
    assert audit(tmp_path / "out", reference, "item_id") == {
        "rows_lost": 0,
        "duplicate_rows": 0,
        "mixed_model_parts": 0,
        "max_abs_diff": 0.0,
    }


def test_a_job_started_while_another_runs_on_the_same_output_is_refused(ray_session, model, demo_data, tmp_path):
    out = tmp_path / "out"
    first = start(embed_command(model, demo_data / "train", out), tmp_path / "first.log")
    deadline = time.monotonic() + 120
    while not (out / "_job.lock").exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.01)
    try:
        with pytest.raises(JobError, match=rf"is in use by another embed job \(pid {first.pid} on "):
            embed(model, demo_data / "train", out)
    finally:
        kill_job(first)


def _ray_train_workers() -> list:
    """Pids of this session's Ray Train workers (the shared test Ray was started from here)."""
    return session_processes(os.getsid(0), "RayTrainWorker")


def test_a_training_worker_killed_mid_run_is_replaced_and_the_run_finishes_from_its_checkpoint(
    ray_session, demo_data, tmp_path
):
    from deepsets.pipelines.demo import default_demo_config
    from deepsets.pipelines.training.run import run_training

    cfg = default_demo_config(demo_data, workers=2)
    cfg = cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update={"dim": 32}),
            "training": cfg.training.model_copy(update={"epochs": 3, "batch_size": 100}),
            "scaling": cfg.scaling.model_copy(update={"max_failures": 1}),
            "tracking": cfg.tracking.model_copy(
                update={
                    "run_name": "killed",
                    "storage_path": str(tmp_path / "ray"),
                    "mlflow_uri": f"sqlite:///{tmp_path}/mlflow.db",
                }
            ),
        }
    )
    killed, finished = [], threading.Event()

    def kill_after_first_checkpoint():
        while not finished.is_set() and not killed:
            if checkpoint_registered(tmp_path / "ray" / "killed") and _ray_train_workers():
                time.sleep(1.0)  # rank 0 logs the epoch to MLflow right after the checkpoint: mid next epoch now
                victim = max(_ray_train_workers())
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    try:
        summary = run_training(cfg, progress=False)
    finally:
        finished.set()
        killer.join()
    assert killed, "no worker was killed"
    assert summary["epochs_done"] == 3
    client = mlflow.tracking.MlflowClient(summary["tracking_uri"])
    resumed = [m.value for m in client.get_metric_history(summary["run_id"], "resumed_at_epoch")]
    assert len(resumed) == 1 and 1 <= resumed[0] <= 2  # the epoch after the registered checkpoint's
    steps = [m.step for m in client.get_metric_history(summary["run_id"], "train_loss")]
    # the epochs up to the registered checkpoint are never trained again; the one the kill cut
    # short is trained again from that checkpoint (and logged again if rank 0 had logged it)
    assert sorted(set(steps)) == [0, 1, 2]
    assert all(steps.count(epoch) == 1 for epoch in range(int(resumed[0])))
    assert client.get_run(summary["run_id"]).info.status == "FINISHED"


def test_a_diverging_run_stops_naming_epoch_and_step_exits_2_is_failed_in_mlflow_and_logs_no_model(
    ray_session, demo_data, tmp_path, capsys
):
    arguments, uri = diverging_run_args(demo_data, tmp_path)  # a regression label of 1e30: overflows at once
    status = main(arguments)
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "the training loss is inf at epoch 1/1, step 1 of the epoch (rank 0): training diverged" in err
    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("deepsets").experiment_id])
    assert run.info.status == "FAILED" and not client.search_logged_models([run.info.experiment_id])
