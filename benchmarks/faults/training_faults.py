"""Faults of the training job: a Ray Train worker killed mid-run (the run must finish from its
checkpoint), and a run whose loss overflows (it must fail, be FAILED in MLflow and log no model).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pyarrow.parquet as pq

from benchmarks.faults.processes import JOB_TIMEOUT_S, finish, session_processes, start


def training_worker_killed(data: Path, work: Path, logs: Path, epochs: int = 4) -> dict:
    """``deepsets train`` with 2 workers and ``max_failures = 1``; one worker is killed once
    the first checkpoint exists. The run must finish every epoch from its checkpoint."""
    import mlflow

    from deepsets.pipelines.demo import default_demo_config

    work.mkdir(parents=True, exist_ok=True)
    cfg = default_demo_config(data, workers=2)
    config = work / "train.toml"
    config.write_text(cfg.to_toml())
    storage = work / "ray_results"
    command = [
        sys.executable,
        "-m",
        "deepsets.pipelines.cli",
        "train",
        "--config",
        str(config),
        "--json",
        "--set",
        f"training.epochs={epochs}",
        "--set",
        "training.batch_size=100",
        "--set",
        "scaling.max_failures=1",
        "--set",
        "tracking.run_name=killed-worker",
        "--set",
        f"tracking.storage_path={storage}",
        "--set",
        f"tracking.mlflow_uri=sqlite:///{work / 'mlflow.db'}",
    ]
    log = logs / "train-killed.log"
    job = start(command, log)
    deadline, killed = time.monotonic() + JOB_TIMEOUT_S, None
    while time.monotonic() < deadline and job.poll() is None and killed is None:
        if checkpoint_registered(storage / "killed-worker"):
            time.sleep(1.0)  # past rank 0's MLflow logging of that epoch: mid next epoch
            workers = session_processes(job.pid, "RayTrainWorker")
            if workers:
                killed = max(workers)
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    summary = finish(job, log)
    client = mlflow.tracking.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    resumed = [m.value for m in client.get_metric_history(summary["run_id"], "resumed_at_epoch")]
    return {
        "worker_killed": killed is not None,
        "epochs_done": summary["epochs_done"],
        "epochs": epochs,
        "resumed_at_epoch": resumed,
        "status": client.get_run(summary["run_id"]).info.status,
    }


def checkpoint_registered(run_dir: Path) -> bool:
    """Whether Ray Train has registered a checkpoint of the run (every rank reported the epoch);
    a worker killed before that restarts the run from its previous checkpoint, or from scratch."""
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    try:
        return bool(json.loads(snapshot.read_text()).get("checkpoint_results"))
    except (OSError, ValueError):
        return False


def overflowing_copy(data: Path, out: Path) -> Path:
    """``data`` (train, valid, schema) with a regression label ``huge`` of 1e30 in every row: a
    squared error on it overflows at the first step."""
    import pyarrow as pa

    for split in ("train", "valid"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for path in sorted((data / split).glob("*.parquet")):
            table = pq.read_table(path)
            pq.write_table(
                table.append_column("huge", pa.array(np.full(table.num_rows, 1e30, np.float32))),
                out / split / path.name,
            )
    (out / "schema.toml").write_text((data / "schema.toml").read_text())
    return out


def diverging_run_args(data: Path, work: Path) -> Tuple[List[str], str]:
    """Set up a regression run on a label of 1e30 (the loss overflows at its first step).

    Args:
        data: the reference workload (train, valid, schema.toml).
        work: a folder for the overflowing copy of ``data``, the run config, Ray's results and
            the MLflow database.

    Returns:
        ``(arguments, tracking URI)``: the command line after ``deepsets`` (``train --config
        ... --set ...``), and the MLflow URI the run is tracked in.
    """
    from deepsets.pipelines.demo import default_demo_config

    huge = overflowing_copy(data, work / "huge")
    config = work / "diverging.toml"
    config.write_text(default_demo_config(huge, workers=1).to_toml())
    uri = f"sqlite:///{work / 'diverging.db'}"
    arguments = [
        "train",
        "--config",
        str(config),
        "--set",
        "task.kind=regression",
        "--set",
        "data.label_columns=['huge']",
        "--set",
        "training.epochs=1",
        "--set",
        "tracking.run_name=diverging",
        "--set",
        f"tracking.storage_path={work / 'ray_results'}",
        "--set",
        f"tracking.mlflow_uri={uri}",
    ]
    return arguments, uri


def diverging_run(data: Path, work: Path, logs: Path) -> dict:
    """A regression run on a label of 1e30 (the loss overflows at once) through the CLI."""
    import mlflow

    from deepsets.pipelines.demo import default_demo_config

    arguments, uri = diverging_run_args(data, work)
    log = logs / "diverging.log"
    code = start([sys.executable, "-m", "deepsets.pipelines.cli", *arguments], log).wait(timeout=JOB_TIMEOUT_S)
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(default_demo_config(work / "huge").tracking.experiment).experiment_id]
    )
    return {
        "exit_code": code,
        "statuses": [r.info.status for r in runs],
        "logged_models": len(client.search_logged_models([runs[0].info.experiment_id])) if runs else 0,
        "error_line": next((line for line in log.read_text().splitlines() if line.startswith("error:")), ""),
    }
