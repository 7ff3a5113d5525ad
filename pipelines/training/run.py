"""``deepsets train``: fit (or reuse) the feature spec, train on Ray Train, track in MLflow.

Recipe:
    setup    -- validate the config, fit/load the FeatureSpec, open (or find, on --resume) the
                MLflow run, start or join Ray;
    train    -- ray.train.torch.TorchTrainer runs deepsets.pipelines.training.loop.train_worker on every
                worker, checkpointing every epoch under storage_path/run_name;
    cleanup  -- log the final model (pyfunc, see deepsets.pipelines.models.pyfunc) and close the run.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from deepsets.features import storage
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.config import RunConfig
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.ray_processes import private_ray
from deepsets.pipelines.ray_runtime import require_gpus, use_ray_train_v2
from deepsets.pipelines.redaction import redact_uris
from deepsets.pipelines.training.claim import RunClaim
from deepsets.pipelines.training.inputs import check_data_paths, check_training_data, item_counts
from deepsets.pipelines.training.progress import progress_mode
from deepsets.pipelines.training.resume import (
    check_resumable,
    checkpoint_dirs,
    epochs_done,
    run_directory,
    save_run_record,
)
from deepsets.pipelines.training.selection import SCORE_KEY, Selection
from deepsets.pipelines.training.tracking import open_mlflow_run, run_status

MODEL_CHECKPOINT_TAG = "deepsets.model_checkpoint"  # the checkpoint whose weights the run's logged model holds
MODEL_URI_TAG = "deepsets.model_uri"


class TrainingFailed(JobError):
    """Training stopped with an error more often than ``scaling.max_failures`` allows."""


def prepare_spec(cfg: RunConfig, run_dir: str, resume: bool, progress: bool) -> FeatureSpec:
    """The run's spec: on resume the one saved at its start; else cfg.data.spec; else fitted."""
    saved = storage.join(run_dir, "spec.json")
    if resume:
        if not storage.exists(saved):
            raise JobError(f"cannot resume: {run_dir} holds no spec.json from an earlier start of this run")
        return FeatureSpec.load(saved)
    spec = (
        FeatureSpec.load(cfg.data.spec)
        if cfg.data.spec
        else FeatureSpec.fit(cfg.feature_schema(), cfg.data.train, progress=progress)
    )
    storage.make_dirs(run_dir)
    spec.save(saved)
    return spec


def validate_values(cfg: RunConfig, spec: FeatureSpec, progress: bool) -> None:
    """Read every value the workers will read through the spec, on the driver, so a bad one
    fails here as one line naming file, column and rows rather than inside a Ray worker. A spec
    fitted by this run has read the training files already; the validation files, the item
    table and training files under a given ``data.spec`` are read here.

    Raises:
        DataError: for the first bad value.
    """
    if cfg.data.spec:
        spec.validate(list(cfg.data.train), progress=progress, desc="checking train")
    if cfg.data.valid:
        spec.validate(list(cfg.data.valid), progress=progress, desc="checking valid")
    if cfg.data.items:
        spec.subset(list(cfg.model.item_modalities)).validate(
            list(cfg.data.items), progress=progress, desc="checking items"
        )


def run_training(
    cfg: RunConfig,
    *,
    resume: bool = False,
    ray_address: Optional[str] = None,
    progress: bool = True,
    callbacks: Sequence = (),
) -> dict:
    """Train as the config says; return the summary printed by ``deepsets train --json``.

    The logged model is the selected epoch's (``training.select``, :mod:`.selection`); the
    summary's ``metrics`` are that epoch's, ``selected`` says which epoch it is.

    Args:
        callbacks: Ray Train ``UserCallback`` s (``deepsets tune`` passes Tune's reporter).

    Raises:
        DataError: for bad data.
        JobError: for a run name that exists (or is claimed by a run that runs now) without
            --resume, or is missing or still running with it.
        TrainingFailed: when training failed more often than ``scaling.max_failures`` allows.
    """
    use_ray_train_v2()
    started = time.perf_counter()
    run_name = cfg.tracking.resolved_run_name()
    run_dir = run_directory(cfg, run_name)
    started_before = bool(checkpoint_dirs(run_dir))
    if started_before and not resume:
        raise JobError(
            f"run '{run_name}' already exists in {cfg.tracking.storage_path}: pass --resume to continue it, or choose another tracking.run_name"
        )
    if resume and not started_before:
        raise JobError(f"cannot resume: run '{run_name}' in {cfg.tracking.storage_path} has no checkpoint yet")
    claim = RunClaim(run_dir, run_name, cfg.tracking.storage_path).take(resume)  # before anything is written there
    try:
        summary = _run_claimed(cfg, run_name, run_dir, resume, ray_address, progress, callbacks, started)
    finally:
        claim.release(keep=bool(checkpoint_dirs(run_dir)))  # a new run that left no checkpoint gives the name back
    return summary


def _run_claimed(
    cfg: RunConfig,
    run_name: str,
    run_dir: str,
    resume: bool,
    ray_address: Optional[str],
    progress: bool,
    callbacks: Sequence,
    started: float,
) -> dict:
    """:func:`run_training` once the run folder is claimed: check the data, save the spec and
    the run record, open the MLflow run, train and log."""
    check_data_paths(cfg)
    trainer = chosen_trainer(cfg, ray_address, callbacks)
    notice = check_resumable(cfg, run_dir, trainer) if resume else None
    if notice and progress:
        print(notice)
    done_before = epochs_done(run_dir) if resume else 0
    spec = prepare_spec(cfg, run_dir, resume, progress)
    check_training_data(cfg, spec)
    if not resume:
        validate_values(cfg, spec, progress)
        save_run_record(cfg, run_dir, trainer)
    popularity = item_counts(cfg)  # before any run is opened: a bad item column fails here
    selection = Selection.of(
        cfg.training.select, cfg.training.patience, cfg.model.task, cfg.task.k, bool(cfg.data.valid)
    )
    # a local Ray started here ends with the run; its workers that outlive it are ended by pid
    ray = (
        nullcontext()
        if trainer == "in_process"
        else private_ray(ray_address, int(cfg.scaling.workers * cfg.scaling.cpus_per_worker) + 1)
    )
    with ray:
        if cfg.scaling.use_gpu:  # Ray Train would wait for GPUs that never come
            what = f"scaling.use_gpu = true with scaling.workers = {cfg.scaling.workers}"
            require_local_gpu(what) if trainer == "in_process" else require_gpus(cfg.scaling.workers, what)
        uri, run_id = open_mlflow_run(cfg, run_name, resume, spec)
        with run_status(uri, run_id):  # RUNNING now; FAILED, KILLED or FINISHED as the run ends
            summary = _train_and_log(
                cfg,
                spec,
                run_name=run_name,
                run_dir=run_dir,
                mlflow_run={"uri": uri, "run_id": run_id},
                selection=selection,
                popularity=popularity,
                trainer=trainer,
                callbacks=callbacks,
                started=started,
                progress_mode=progress_mode(progress),
            )
    summary["epochs_this_run"] = summary["epochs_done"] - done_before  # 0: a --resume that found nothing left to train
    return summary


def _train_and_log(
    cfg: RunConfig,
    spec: FeatureSpec,
    *,
    run_name: str,
    run_dir: str,
    mlflow_run: Dict[str, str],
    selection: Selection,
    popularity: Optional[dict],
    trainer: str,
    callbacks: Sequence,
    started: float,
    progress_mode: str,
) -> dict:
    """Train (in this process or on Ray Train); the selected epoch's model is logged to the run.

    Args:
        mlflow_run: ``{"uri": tracking URI, "run_id": ...}`` of the open MLflow run.
        trainer: ``in_process`` or ``ray_train`` (:func:`chosen_trainer`).
        progress_mode: how rank 0 shows its progress (``deepsets.pipelines.training.progress.MODES``).
    """
    import mlflow

    from deepsets.pipelines.models.pyfunc import log_deepsets_model
    from deepsets.pipelines.training.loop import FAIL_AT_EPOCH_ENV

    uri, run_id = mlflow_run["uri"], mlflow_run["run_id"]
    loop_config = {
        "config": cfg,  # checked here once, with its model settings: the workers do not check it again
        "spec": spec.to_dict(),
        "mlflow": dict(mlflow_run),
        "progress_mode": progress_mode,
        "fail_at_epoch": int(os.environ[FAIL_AT_EPOCH_ENV]) if os.environ.get(FAIL_AT_EPOCH_ENV) else None,
        "item_counts": popularity,
    }
    try:
        if trainer == "in_process":
            trained = _fit_in_process(loop_config, run_dir)
        else:
            trained = _fit_on_ray_train(cfg, loop_config, run_name, selection, callbacks)
    except Exception as error:  # a worker's error (Ray's WorkerGroupError / TrainingFailedError), or ours in process
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        where = (
            f"checkpoints so far are in {run_dir} (continue with --resume)"
            if checkpoint_dirs(run_dir)
            else "no epoch finished, so there is no checkpoint: fix the cause and run the same command again"
        )
        retries = f"scaling.max_failures = {cfg.scaling.max_failures}" if trainer == "ray_train" else "in process"
        raise TrainingFailed(
            redact_uris(  # a worker's error may name the tracking URI
                f"training failed ({retries}): {lines[-1] if lines else type(error).__name__}; {where}"
            )
        ) from None
    state, spec, args, kept_name = trained.state, trained.spec, trained.args, trained.name
    mlflow.set_tracking_uri(uri)
    tags = mlflow.get_run(run_id).data.tags
    with mlflow.start_run(run_id=run_id):
        if tags.get(MODEL_CHECKPOINT_TAG) == kept_name and tags.get(MODEL_URI_TAG):
            model_uri = tags[MODEL_URI_TAG]  # a resumed run that had already finished: its model is logged
        else:
            # step: MLflow attaches the run's metrics of that step (the kept epoch) to the logged model
            model_uri = log_deepsets_model(state.model, spec, args, step=state.epoch)
            mlflow.set_tags(
                {
                    "deepsets.selected_epoch": str(state.epoch + 1),
                    "deepsets.selected_on": selection.metric or "last epoch",
                    MODEL_CHECKPOINT_TAG: kept_name,
                    MODEL_URI_TAG: model_uri,
                }
            )
    metrics = {k: v for k, v in trained.metrics.items() if isinstance(v, (int, float)) and k != SCORE_KEY}
    metrics["epoch"] = state.epoch + 1  # counted from 1, as every printed line counts (MLflow steps count from 0)
    last_epoch = trained.last_epoch if trained.last_epoch >= 0 else state.epoch
    return {
        "run_name": run_name,
        "run_id": run_id,
        "model_uri": model_uri,
        "tracking_uri": redact_uris(uri),  # printed and written (deepsets tune's trial files): its password redacted
        "checkpoint": storage.join(run_dir, kept_name),  # a URI when storage_path is one
        "epochs_done": last_epoch + 1,
        "trainer": trainer,
        "selected": {
            "epoch": state.epoch + 1,
            "metric": selection.metric or "last",
            "value": metrics.get(selection.metric) if selection.metric else None,
            "stopped_early": last_epoch + 1 < cfg.training.epochs,
        },
        "metrics": metrics,
        "seconds": round(time.perf_counter() - started, 1),
    }


@dataclass
class _Kept:
    """The selected epoch's checkpoint, loaded: its state, spec and model settings, its folder's
    name, the metrics reported for it, and the last epoch trained (counted from 0)."""

    state: Any
    spec: FeatureSpec
    args: Any
    name: str
    metrics: Dict[str, Any]
    last_epoch: int


def _fit_in_process(loop_config: dict, run_dir: str) -> _Kept:
    """:func:`deepsets.pipelines.training.in_process.train_in_process`, its selected checkpoint loaded."""
    from deepsets.pipelines.models.checkpoint import load_checkpoint
    from deepsets.pipelines.training.in_process import train_in_process

    trained = train_in_process(loop_config, run_dir)
    state, spec, _, args = load_checkpoint(trained.checkpoint)
    return _Kept(state, spec, args, storage.name_of(trained.checkpoint), trained.metrics, trained.last_epoch)


def _fit_on_ray_train(cfg: RunConfig, loop_config: dict, run_name: str, selection: Selection, callbacks) -> _Kept:
    """Ray Train's TorchTrainer runs :func:`deepsets.pipelines.training.loop.train_worker` on
    ``scaling.workers`` workers; the selected checkpoint loaded.

    Raises:
        Exception: Ray's error when training failed more often than ``scaling.max_failures``.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from deepsets.pipelines.models.checkpoint import load_checkpoint
    from deepsets.pipelines.training.loop import train_worker

    trainer = TorchTrainer(
        train_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={"CPU": cfg.scaling.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=cfg.tracking.storage_path,
            failure_config=ray.train.FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=checkpoint_retention(selection),
            callbacks=list(callbacks),
            # Ray Train's own INFO lines (worker groups, each report's dict, checkpoint paths) go
            # to its log files under the Ray session's logs/train/; the console shows warnings up
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    kept, kept_metrics = selected_checkpoint(result, selection)
    with kept.as_directory() as directory:
        state, spec, _, args = load_checkpoint(directory)
    last_epoch = int((result.metrics or {}).get("epoch", state.epoch))
    return _Kept(state, spec, args, storage.name_of(kept.path), kept_metrics, last_epoch)


def chosen_trainer(cfg: RunConfig, ray_address: Optional[str], callbacks: Sequence) -> str:
    """``scaling.trainer``, with ``auto`` resolved: ``in_process`` for one worker without a Ray
    address (nor Tune's callbacks, which need Ray Train's reports), else ``ray_train``.

    Raises:
        JobError: for ``in_process`` with a Ray address or inside ``deepsets tune``.
    """
    chosen = cfg.scaling.trainer
    if chosen == "auto":
        return "in_process" if cfg.scaling.workers == 1 and not ray_address and not callbacks else "ray_train"
    if chosen == "in_process" and ray_address:
        raise JobError(
            f"scaling.trainer = in_process trains in this process, not on the Ray cluster at {redact_uris(ray_address)}: "
            'drop --ray-address, or set scaling.trainer = "ray_train"'
        )
    if chosen == "in_process" and callbacks:
        raise JobError('deepsets tune trains each trial on Ray Train: set scaling.trainer = "auto" or "ray_train"')
    return chosen


def require_local_gpu(what: str) -> None:
    """An in-process run with ``scaling.use_gpu`` needs a CUDA device here.

    Raises:
        JobError: naming ``what`` asked for it.
    """
    import torch

    if not torch.cuda.is_available():
        raise JobError(f"{what}: no CUDA device in this process (torch.cuda.is_available() is False)")


def checkpoint_retention(selection: Selection):
    """Ray Train keeps the best checkpoint by the selected metric (and always the latest, which
    a resumed run continues from); with no selection, the latest alone."""
    import ray.train

    if selection.metric is None:
        return ray.train.CheckpointConfig(num_to_keep=1)
    return ray.train.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=SCORE_KEY, checkpoint_score_order="max")


def selected_checkpoint(result, selection: Selection):
    """``(checkpoint, its epoch's metrics)``: the best by the selected metric (the earliest of
    equals), or the last one."""
    if selection.metric is None or not result.best_checkpoints:
        return result.checkpoint, dict(result.metrics or {})
    best = max(
        result.best_checkpoints, key=lambda pair: (pair[1].get(SCORE_KEY, float("-inf")), -pair[1].get("epoch", 0))
    )
    return best[0], dict(best[1])
