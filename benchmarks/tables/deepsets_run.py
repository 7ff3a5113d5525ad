"""deepsets as a user runs it on a new table: write a run config with defaults, ``deepsets
train`` it as a subprocess, score the logged model (MLflow pyfunc, logits) on the test split.

The run config comes from ``deepsets init`` when the installed command line has it; otherwise
from :func:`standin_config`, which the output marks: it declares each column by its Arrow type
and sets nothing else (every model and training setting stays at its default).
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


def has_init() -> bool:
    """Whether the installed ``deepsets`` command line has ``init``."""
    return subprocess.run([*CLI, "init", "--help"], check=False, capture_output=True).returncode == 0


def init_config(data: Path, info: TableInfo, out: Path) -> Path:
    """``deepsets init`` on the training split: writes ``out/schema.toml`` and ``out/run.toml``."""
    out.mkdir(parents=True, exist_ok=True)
    _run([*CLI, "init", "--input", str(data / "train"), "--valid", str(data / "valid"), "--label", info.label, "--id", ID_COLUMN,
          "--out", str(out)], out)
    return out / "run.toml"


def standin_config(data: Path, info: TableInfo, out: Path) -> Path:
    """A run config from the columns' Arrow types alone, as ``deepsets init`` would write it:
    numbers form one ``numeric`` modality, each string column is ``categorical``, each list of
    ids or strings an ``id_sequence``, each list of float vectors a ``dense_sequence``; the task
    is ``binary`` for a 0/1 label, else ``regression``. Nothing else is set.

    Raises:
        ValueError: naming the column whose type none of these kinds takes.
    """
    from deepsets.pipelines.config.toml_text import toml_value

    schema = pq.read_schema(next((data / "train").glob("*.parquet")))
    numbers: list[str] = []
    modalities: list[dict[str, object]] = []
    for field in schema:
        if field.name in (ID_COLUMN, info.label):
            continue
        kind = _kind(field.type)
        if kind is None:
            raise ValueError(f"{data / 'train'}: column {field.name!r} is {field.type}: no deepsets kind takes it")
        if kind == "numeric":
            numbers.append(field.name)
        elif kind == "dense_sequence":
            modalities.append({"name": field.name, "kind": kind, "dim": field.type.value_type.list_size})
        else:
            modalities.append({"name": field.name, "kind": kind})
    if numbers:
        modalities.insert(0, {"name": "numbers", "kind": "numeric", "columns": numbers})
    lines = [f"id_column = {toml_value(ID_COLUMN)}"]
    for m in modalities:
        lines += ["", "[[modality]]", *(f"{k} = {toml_value(v)}" for k, v in m.items())]
    out.mkdir(parents=True, exist_ok=True)
    (out / "schema.toml").write_text("\n".join(lines) + "\n")
    labels = pq.read_table(data / "train", columns=[info.label]).column(info.label).to_numpy()
    task = "binary" if set(np.unique(labels).tolist()) <= {0, 1} else "regression"
    (out / "run.toml").write_text(
        f'[data]\ntrain = {toml_value(str(data / "train"))}\nvalid = {toml_value(str(data / "valid"))}\n'
        f"label_columns = [{toml_value(info.label)}]\n\n[schema]\npath = \"schema.toml\"\n\n[task]\nkind = {toml_value(task)}\n")
    return out / "run.toml"


def _kind(arrow_type: pa.DataType):
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "categorical"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        inner = arrow_type.value_type
        if pa.types.is_integer(inner) or pa.types.is_string(inner) or pa.types.is_large_string(inner):
            return "id_sequence"
        if pa.types.is_fixed_size_list(inner) and pa.types.is_floating(inner.value_type):
            return "dense_sequence"
    return None


def run_deepsets(data: Path, info: TableInfo, work: Path, seed: int, use_init: bool) -> dict:
    """Config (``deepsets init`` or the stand-in), ``deepsets train`` with the given seed, and the
    logged model's test score (AUC or RMSE of its logits).

    Returns:
        ``{"valid", "test", "seconds", "config"}``: the trained run's validation metric as it
        reported it, the test score, the wall time of all three steps (every process start-up
        included) and which config writer ran.

    Raises:
        RuntimeError: with the command's last output lines when a step fails.
    """
    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    config = (init_config if use_init else standin_config)(data, info, work / "config")
    summary = json.loads(_run([*CLI, "train", "--config", str(config), "--json", "--set", f"training.seed={seed}",
                               "--set", f"tracking.run_name={info.name}-seed{seed}"], work).splitlines()[-1])
    test = pq.read_table(data / "test")
    logits = _logits(summary["model_uri"], work, test)  # (N,)
    metric = "valid_auc" if info.task == "binary" else "valid_rmse"
    return {"valid": summary["metrics"].get(metric), "test": score(info.task, test.column(info.label).to_numpy().astype(np.float64), logits),
            "seconds": time.perf_counter() - started, "config": "deepsets init" if use_init else "stand-in"}


def _logits(model_uri: str, work: Path, table: pa.Table) -> np.ndarray:
    """The logged model's logits on ``table`` through ``mlflow.pyfunc``, from the run's store."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
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
        raise RuntimeError(f"deepsets {' '.join(command[len(CLI):])} failed with status {done.returncode}:\n{tail}")
    return done.stdout
