"""Training the MovieLens models through ``run_training`` (what ``deepsets train`` runs), or
taking a finished run of the same name from the work's MLflow store instead.

    cfg = run_config(data, work, "in_batch-s0", {"kind": "two_tower", ...}, section, epochs, workers, seed)
    trained = train_or_reuse(cfg, reuse=True)   # {"model_uri", "run_id", "selected", "seconds", ...}
"""

from __future__ import annotations

from pathlib import Path


def run_config(
    data: Path,
    work: Path,
    name: str,
    task: dict,
    data_section: dict,
    epochs: int,
    workers: int,
    seed: int,
    dim: int = 64,
):
    """A validated training config over the MovieLens schema (model width ``dim``)."""
    from deepsets.pipelines.config import parse_run_config

    raw = {
        "data": data_section,
        "schema": {"path": str(data / "schema.toml")},
        "model": {
            "dim": dim,
            "layers": 1,
            "heads": 4,
            "pooling": "attention",
            "fusion": "transformer",
            "fusion_layers": 1,
            "modality_dropout": 0.1,
        },
        "task": task,
        "training": {"epochs": epochs, "batch_size": 256 * workers, "lr": 2e-3, "seed": seed, "warmup_steps": 50},
        "scaling": {"workers": workers, "cpus_per_worker": 2 if workers == 1 else 1},
        "tracking": {
            "experiment": "movielens",
            "run_name": name,
            "storage_path": str(work / "ray_results"),
            "mlflow_uri": f"sqlite:///{work / 'mlflow.db'}",
        },
    }
    cfg = parse_run_config(raw, "<benchmarks.movielens>")
    # the same run from the command line: deepsets train --config <work>/<kind>.toml
    (work / f"{task['kind']}.toml").write_text(
        cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"run_name": ""})}).to_toml()
    )
    return cfg


def train_or_reuse(cfg, reuse: bool) -> dict:
    """``run_training(cfg)``; with ``reuse``, a finished run of the same name in the work's
    MLflow store is taken instead (its logged model, kept epoch and duration), and a run
    interrupted before it finished is resumed from its last checkpoint, so an interrupted
    benchmark continues without retraining what it already has."""
    from deepsets.pipelines.training.resume import checkpoint_dirs, run_directory
    from deepsets.pipelines.training.run import run_training

    found = finished_run(cfg) if reuse else None
    if found is not None:
        print(f"reusing the finished run {cfg.tracking.run_name} ({found['model_uri']})", flush=True)
        return found
    interrupted = reuse and bool(checkpoint_dirs(run_directory(cfg, cfg.tracking.run_name)))
    if interrupted:
        print(f"resuming the interrupted run {cfg.tracking.run_name} from its last checkpoint", flush=True)
    return run_training(cfg, resume=interrupted, progress=False)


def finished_run(cfg) -> dict | None:
    """The latest FINISHED MLflow run named ``cfg.tracking.run_name`` with its logged model,
    as ``run_training`` would have returned it (model URI, kept epoch, seconds), or None."""
    import mlflow

    run = latest_finished_run(cfg.tracking.mlflow_uri, cfg.tracking.experiment, cfg.tracking.run_name)
    if run is None or "deepsets.selected_epoch" not in run.data.tags:
        return None
    mlflow.set_tracking_uri(cfg.tracking.mlflow_uri)
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list",
    )
    if not models:
        return None
    return {
        "run_name": cfg.tracking.run_name,
        "run_id": run.info.run_id,
        "model_uri": f"models:/{models[0].model_id}",
        "tracking_uri": cfg.tracking.mlflow_uri,
        "selected": {"epoch": int(run.data.tags["deepsets.selected_epoch"])},
        "seconds": round((run.info.end_time - run.info.start_time) / 1000, 1),
    }


def latest_finished_run(mlflow_uri: str, experiment: str, run_name: str):
    """The latest FINISHED MLflow run named ``run_name`` in ``experiment`` of the store at
    ``mlflow_uri``, or None."""
    import mlflow

    client = mlflow.tracking.MlflowClient(mlflow_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        f"tags.mlflow.runName = '{run_name}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def log_metrics_to_run(trained: dict, metrics: dict) -> None:
    """Log ``metrics`` (name -> value) to the MLflow run ``trained`` names (``train_or_reuse``'s result)."""
    import mlflow

    client = mlflow.tracking.MlflowClient(trained["tracking_uri"])
    for key, value in metrics.items():
        client.log_metric(trained["run_id"], key, value)
