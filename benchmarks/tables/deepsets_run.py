"""deepsets as a user runs it on a new table: ``deepsets init`` writes the schema and run config,
``deepsets train`` trains it, each as a subprocess; the logged model (MLflow pyfunc, logits) is
scored on the test split. Nothing in the written config is changed but the seed, the run name
and the tracking store (one per run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.tables.common import ID_COLUMN, TableInfo
from benchmarks.tables.peers import score

SCRIPT = Path(sys.executable).parent / "deepsets"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "deepsets.pipelines.cli"]
"""The ``deepsets`` command installed next to this Python (its module where no script is)."""


def init_config(data: Path, info: TableInfo, out: Path) -> Path:
    """``deepsets init`` on the training split: writes ``out/schema.toml`` and ``out/run.toml``."""
    out.mkdir(parents=True, exist_ok=True)
    _run(
        [
            *CLI,
            "init",
            "--input",
            str(data / "train"),
            "--valid",
            str(data / "valid"),
            "--label",
            info.label,
            "--id",
            ID_COLUMN,
            "--out",
            str(out),
        ],
        out,
    )
    return out / "run.toml"


def run_deepsets(data: Path, info: TableInfo, work: Path, seed: int) -> dict:
    """``deepsets init``, ``deepsets train`` with the given seed, and the logged model's test
    score (AUC or RMSE of its logits).

    Returns:
        ``{"valid", "test", "seconds"}``: the trained run's validation metric as it reported it,
        the test score, and the wall time of all three steps (every process start-up included).

    Raises:
        RuntimeError: with the command's last output lines when a step fails.
    """
    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    config = init_config(data, info, work / "config")
    # the run's own tracking store, named outright: an inherited MLFLOW_TRACKING_URI (MLflow sets it
    # in this process on every set_tracking_uri) would send the run to another store
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    summary = json.loads(
        _run(
            [
                *CLI,
                "train",
                "--config",
                str(config),
                "--json",
                "--set",
                f"training.seed={seed}",
                "--set",
                f"tracking.run_name={info.name}-seed{seed}",
                "--set",
                f"tracking.mlflow_uri={tracking}",
            ],
            work,
        ).splitlines()[-1]
    )
    test = pq.read_table(data / "test")
    logits = _logits(summary["model_uri"], tracking, work, test)  # (N,)
    metric = "valid_auc" if info.task == "binary" else "valid_rmse"
    return {
        "valid": summary["metrics"].get(metric),
        "test": score(info.task, test.column(info.label).to_numpy().astype(np.float64), logits),
        "seconds": time.perf_counter() - started,
    }


def _logits(model_uri: str, tracking: str, work: Path, table: pa.Table) -> np.ndarray:
    """The logged model's logits on ``table`` through ``mlflow.pyfunc``, from the run's store."""
    import mlflow

    mlflow.set_tracking_uri(tracking)
    here = Path.cwd()
    os.chdir(work)  # the model's files live under the run's ./mlruns
    try:
        served = mlflow.pyfunc.load_model(model_uri)
        frame = served.predict(table, params={"output": "logits"})
    finally:
        os.chdir(here)
    return np.stack(frame["logits"].to_numpy())[:, 0]  # (N,)


def _run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"deepsets {' '.join(command[len(CLI) :])} failed with status {done.returncode}:\n{tail}")
    return done.stdout
