"""``deepsets train``: fit (or reuse) the feature spec, train on Ray Train, track in MLflow.

Recipe:
    setup    -- validate the config, fit/load the FeatureSpec, open (or find, on --resume) the
                MLflow run, start or join Ray;
    train    -- ray.train.torch.TorchTrainer runs pipelines.train_loop.train_worker on every
                worker, checkpointing every epoch under storage_path/run_name;
    cleanup  -- log the final model (pyfunc, see pipelines.mlflow_model) and close the run.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Optional

import pyarrow as pa

from features.errors import FeatureError
from features.files import check_columns, open_parquet, resolve_inputs
from features.spec import FeatureSpec
from pipelines.config import RunConfig
from pipelines.ray_runtime import start_ray

RUN_NAME_TAG = "deepsets.run_name"


class TrainingFailed(RuntimeError):
    """Training stopped with an error more often than ``scaling.max_failures`` allows."""


def git_commit() -> str:
    """The current git commit of the working directory, or 'unknown'."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def prepare_spec(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool) -> FeatureSpec:
    """The run's spec: on resume the one saved at its start; else cfg.data.spec; else fitted."""
    saved = run_dir / "spec.json"
    if resume:
        if not saved.exists():
            raise FeatureError(f"cannot resume: {run_dir} holds no spec.json from an earlier start of this run")
        return FeatureSpec.load(saved)
    spec = FeatureSpec.load(cfg.data.spec) if cfg.data.spec else FeatureSpec.fit(cfg.feature_schema(), cfg.data.train, progress=progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec.save(saved)
    return spec


def checkpoint_dirs(run_dir: Path) -> list:
    """The checkpoint directories Ray wrote for a run (none if it never finished an epoch)."""
    return [p for p in run_dir.glob("checkpoint_*") if p.is_dir()] if run_dir.exists() else []


def check_resumable(cfg: RunConfig, run_dir: Path) -> None:
    """The model the config builds must be the one in the run's latest checkpoint.

    Raises:
        FeatureError: naming the fields that differ.
    """
    import json

    latest = max(checkpoint_dirs(run_dir), key=lambda p: p.name)
    saved = json.loads((latest / "model_config.json").read_text())
    now = cfg.model_kwargs()
    changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
    if changed:
        diffs = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(changed.items()))
        raise FeatureError(f"cannot resume run '{run_dir.name}' with a different model than its checkpoint ({diffs})")


def check_training_data(cfg: RunConfig, spec: FeatureSpec) -> int:
    """Before any worker starts: every train/valid file has the modality, label and key
    columns, two_tower towers name modalities of the spec, and there is at least one global
    batch of training rows. Returns the training row count.

    Raises:
        FeatureError: naming the file and column, the modality, or the row count.
    """
    labels = list(cfg.data.label_columns) + [c for c in (cfg.data.group_column, cfg.data.item_column) if c]
    for side in ("query", "item"):
        unknown = sorted(set(getattr(cfg.task, f"{side}_modalities")) - set(spec.names))
        if unknown:
            raise FeatureError(f"task.{side}_modalities names {unknown}, not modalities of the schema ({', '.join(spec.names)})")
    rows = 0
    for paths, count in ((cfg.data.train, True), (cfg.data.valid, False)):
        if not paths:
            continue
        for path in resolve_inputs(list(paths)):
            pf = open_parquet(path)
            check_columns(path, pf.schema_arrow, spec.schema.modality, labels)
            for key in (cfg.data.group_column, cfg.data.item_column):
                if key and not pa.types.is_integer(pf.schema_arrow.field(key).type):
                    raise FeatureError(f"must hold integer ids (a query group or item id), found {pf.schema_arrow.field(key).type}", file=path, column=key)
            rows += pf.metadata.num_rows if count else 0
    if rows < cfg.training.batch_size:
        raise FeatureError(f"only {rows} training rows: fewer than one global batch (training.batch_size = {cfg.training.batch_size})")
    return rows


def item_counts(cfg: RunConfig) -> Optional[dict]:
    """two_tower with logQ: ``{"ids": (I,), "counts": (I,)}`` training rows per item id (read from
    the item column alone); None otherwise.

    Raises:
        FeatureError: naming the file, column and rows of a non-integer or null item id.
    """
    if cfg.task.kind != "two_tower" or not cfg.task.logq:
        return None
    import numpy as np

    from features.labels import key_tensor

    column, found = cfg.data.item_column, []
    for path in resolve_inputs(list(cfg.data.train)):
        try:
            found.append(key_tensor(open_parquet(path).read(columns=[column]).column(column), column).numpy())
        except FeatureError as err:
            raise err.located(path, 0) from None
    ids, counts = np.unique(np.concatenate(found), return_counts=True)
    return {"ids": ids.astype(np.int64), "counts": counts.astype(np.int64)}


def open_mlflow_run(cfg: RunConfig, run_name: str, resume: bool, spec_path: Path) -> tuple[str, str]:
    """(tracking uri, run id): a new run with params, tags and artifacts, or the run to resume."""
    import mlflow

    uri = cfg.tracking.resolved_mlflow_uri()
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(cfg.tracking.experiment)
    if resume:
        found = mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'", output_format="list")
        if found:
            return uri, found[0].info.run_id
    tags = {RUN_NAME_TAG: run_name, "git_commit": git_commit()}
    if cfg.tracking.parent_run_id:
        tags["mlflow.parentRunId"] = cfg.tracking.parent_run_id  # how MLflow nests runs
    run = mlflow.start_run(run_name=run_name, tags=tags)
    mlflow.log_params(cfg.flat_params())
    mlflow.log_artifact(str(spec_path))
    mlflow.log_text(cfg.to_toml(), "config.toml")
    mlflow.end_run()
    return uri, run.info.run_id


def run_training(cfg: RunConfig, *, resume: bool = False, ray_address: Optional[str] = None, progress: bool = True) -> dict:
    """Train as the config says; return the summary printed by ``deepsets train --json``.

    Raises:
        FeatureError: for bad data, a run name that exists without --resume (or is missing with it).
        TrainingFailed: when training failed more often than ``scaling.max_failures`` allows.
    """
    import mlflow
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipelines.checkpoint import load_checkpoint
    from pipelines.mlflow_model import log_deepsets_model
    from pipelines.train_loop import FAIL_AT_EPOCH_ENV, train_worker

    started = time.perf_counter()
    run_name = cfg.tracking.resolved_run_name()
    storage = Path(cfg.tracking.storage_path)
    run_dir = storage / run_name
    started_before = bool(checkpoint_dirs(run_dir))
    if started_before and not resume:
        raise FeatureError(f"run '{run_name}' already exists in {storage}: pass --resume to continue it, or choose another tracking.run_name")
    if resume and not started_before:
        raise FeatureError(f"cannot resume: run '{run_name}' in {storage} has no checkpoint yet")
    if resume:
        check_resumable(cfg, run_dir)
    spec = prepare_spec(cfg, run_dir, resume, progress)
    check_training_data(cfg, spec)
    popularity = item_counts(cfg)  # before any run is opened: a bad item column fails here
    uri, run_id = open_mlflow_run(cfg, run_name, resume, run_dir / "spec.json")
    start_ray(ray_address, int(cfg.scaling.workers * cfg.scaling.cpus_per_worker) + 1)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "config": cfg.as_dict(),
            "spec": spec.to_dict(),
            "mlflow": {"uri": uri, "run_id": run_id},
            "fail_at_epoch": int(os.environ[FAIL_AT_EPOCH_ENV]) if os.environ.get(FAIL_AT_EPOCH_ENV) else None,
            "item_counts": popularity,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.workers, use_gpu=cfg.scaling.use_gpu, resources_per_worker={"CPU": cfg.scaling.cpus_per_worker}
        ),
        run_config=ray.train.RunConfig(
            name=run_name, storage_path=str(storage), failure_config=ray.train.FailureConfig(max_failures=cfg.scaling.max_failures)
        ),
    )
    try:
        result = trainer.fit()
        error = result.error
    except Exception as err:  # Ray raises WorkerGroupError / TrainingFailedError here
        error = err
    if error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise TrainingFailed(
            f"training failed (scaling.max_failures = {cfg.scaling.max_failures}): {lines[-1] if lines else type(error).__name__}; "
            f"checkpoints so far are in {run_dir} (continue with --resume)"
        ) from None
    with result.checkpoint.as_directory() as directory:
        state, spec, _, model_config = load_checkpoint(directory)
    from deepsets.builders import build_model

    model = build_model(spec.model_inputs(), **model_config)
    model.load_state_dict(state.model)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        model_uri = log_deepsets_model(model, spec, model_config)
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    return {
        "run_name": run_name,
        "run_id": run_id,
        "model_uri": model_uri,
        "tracking_uri": uri,
        "checkpoint": result.checkpoint.path,
        "epochs_done": state.epoch + 1,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - started, 1),
    }
