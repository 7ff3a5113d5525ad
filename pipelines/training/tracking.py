"""A training run in MLflow: opened RUNNING with its params, tags and artifacts, ended FINISHED,
FAILED or KILLED as the run itself ended, and per-epoch metrics from rank 0.

    uri, run_id = open_mlflow_run(cfg, run_name, resume, spec_path)
    with run_status(uri, run_id):     # FAILED on an error, KILLED on Ctrl-C, FINISHED otherwise
        ...train...
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Dict, Iterator, Optional

from deepsets.pipelines.redaction import config_toml, redact_secrets, redact_uris, require_unredacted

RUN_NAME_TAG = "deepsets.run_name"
PARAM_LIMIT = 500
"""Longest parameter value logged as is (MLflow stores 6,000 characters now, older servers 500);
a longer one keeps its start and a hash of the whole (``param_value``)."""


def git_commit() -> str:
    """The git commit of the deepsets source this code was installed from, or 'unknown'."""
    source = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def param_value(value) -> str:
    """A config value as an MLflow parameter: itself, or when longer than :data:`PARAM_LIMIT`
    its start, its length and the sha256 of the whole, so two runs still compare."""
    text = str(value)
    if len(text) <= PARAM_LIMIT:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"{text[: PARAM_LIMIT - 60]}... ({len(text)} chars, sha256 {digest})"


def quiet_mlflow_logs() -> None:
    """MLflow's INFO lines of a first run in a new store ("Creating initial MLflow database
    tables...", "Experiment with name ... does not exist. Creating a new experiment.") at
    WARNING: a user reads them as problems."""
    for name in ("mlflow.store.db.utils", "alembic", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


def open_mlflow_run(cfg, run_name: str, resume: bool, spec) -> tuple[str, str]:
    """(tracking uri, run id): a new RUNNING run with params, tags and artifacts (the config and
    the feature spec), or the run to resume (set RUNNING again). A new experiment keeps its
    artifacts in ``tracking.artifact_location`` when set (``s3://...``), else MLflow's default.
    The run's params and ``config.toml`` hold every URI with its password redacted.

    Raises:
        ConfigError: for a tracking URI whose password deepsets itself redacted (``user:***@``).
    """
    import mlflow
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    quiet_mlflow_logs()
    uri = require_unredacted(cfg.tracking.resolved_mlflow_uri())
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = experiment_for(client, cfg.tracking.experiment, cfg.tracking.artifact_location)
    if resume:
        found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'")
        if found:
            client.update_run(found[0].info.run_id, status="RUNNING")
            return uri, found[0].info.run_id
    tags = {RUN_NAME_TAG: run_name, "git_commit": git_commit()}
    if cfg.tracking.parent_run_id:
        tags["mlflow.parentRunId"] = cfg.tracking.parent_run_id  # how MLflow nests runs
    run = client.create_run(experiment.experiment_id, run_name=run_name, tags=tags)  # RUNNING until run_status ends it
    run_id = run.info.run_id
    params = redact_secrets(cfg.flat_params())  # the run keeps no password of a URI, the tracking URI's included
    client.log_batch(
        run_id, params=[Param(k, param_value(v)) for k, v in params.items()], tags=[RunTag("mlflow.runName", run_name)]
    )
    client.log_text(run_id, json.dumps(spec.to_dict(), indent=1, sort_keys=True), "spec.json")
    client.log_text(run_id, config_toml(cfg), "config.toml")
    return uri, run_id


def experiment_for(client, name: str, artifact_location: str = ""):
    """The experiment called ``name``, created (with its artifacts in ``artifact_location``,
    when given) if it does not exist.

    Raises:
        JobError: when it exists with its artifacts somewhere else than ``artifact_location``.
    """
    from deepsets.pipelines.errors import JobError

    found = client.get_experiment_by_name(name)
    if found is None:
        experiment_id = client.create_experiment(name, artifact_location=artifact_location or None)
        return client.get_experiment(experiment_id)
    if artifact_location and found.artifact_location.rstrip("/") != artifact_location.rstrip("/"):
        raise JobError(
            f"MLflow experiment '{name}' keeps its artifacts in {redact_uris(found.artifact_location)}, not in "
            f"tracking.artifact_location = {redact_uris(artifact_location)}: an experiment's artifact location is fixed "
            "when it is created; choose another tracking.experiment"
        )
    return found


@contextlib.contextmanager
def run_status(uri: str, run_id: str) -> Iterator[None]:
    """End the run FINISHED when the block completes, KILLED on Ctrl-C, FAILED on any error."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    try:
        yield
    except KeyboardInterrupt:
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


class EpochTracker:
    """Rank 0's MLflow logger: writes metrics into the run the driver opened (NaN included:
    MLflow keeps it, e.g. the AUC of a one-class validation set)."""

    def __init__(self, mlflow_info: Optional[dict]) -> None:
        self.client = None
        if mlflow_info:
            from mlflow.tracking import MlflowClient

            self.client, self.run_id = MlflowClient(tracking_uri=mlflow_info["uri"]), mlflow_info["run_id"]

    def log(self, metrics: Dict[str, float], step: int) -> None:
        if self.client is None:
            return
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.client.log_metric(self.run_id, key, float(value), step=step)
