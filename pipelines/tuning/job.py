"""``deepsets tune``: search a run config's settings on Ray Tune, poor trials stopped early by ASHA.

Recipe:
    setup  -- the run config and the space (or the default space) are validated, every value a
              trial can draw included; an output folder holding an earlier search is refused
              (or cleared); the feature spec is fitted once and shared by every trial; a parent
              MLflow run is opened;
    search -- every trial is ``deepsets train`` with the sampled settings (a Ray Train run inside
              a Tune trial, its MLflow run nested under the parent); each epoch's selected
              validation metric (``training.select``) goes to Tune, whose ASHA scheduler stops
              trials that fall behind at each rung; a time budget, when given, ends the search
              (trials running then are stopped);
    report -- a table of every trial, ``best.toml`` (the run config with the best trial's
              settings, for ``deepsets train --config``), both logged to the parent run.

Output folder::

    trials.md, trials.json   every trial: its settings, status, best metric, epochs, model
    best.toml                the best trial's run config
    spec.json                the feature spec every trial used
    ray_results/             the trials' Ray Train checkpoints; tune/: Tune's own records
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set

from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.config import RunConfig, load_run_config, parse_run_config
from deepsets.pipelines.errors import ConfigError
from deepsets.pipelines.ray_processes import private_ray
from deepsets.pipelines.ray_runtime import PRIVATE_RAY_ENV
from deepsets.pipelines.redaction import config_toml, redact_uris, require_unredacted
from deepsets.pipelines.training.selection import SCORE_KEY, Selection
from deepsets.pipelines.training.tracking import quiet_mlflow_logs
from deepsets.pipelines.tuning.orphans import orphan_sweeper, remove_orphaned_placement_groups
from deepsets.pipelines.tuning.output import TRIALS, prepare_output
from deepsets.pipelines.tuning.progress import trial_progress
from deepsets.pipelines.tuning.space import SearchSpace, check_values, default_space, load_space, with_params

TRIAL_CPU = 0.01
"""CPUs a trial's own process reserves (it only drives its Ray Train run, whose workers reserve theirs)."""
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
"""Ray Train's switch for its preemption watcher, an actor per run that polls whether Ray drains the run's nodes."""


def _trial(params: Dict[str, Any], base: Dict[str, Any], out: str, stamp: str) -> None:
    """One Tune trial: ``deepsets train`` with the sampled settings; Tune sees every epoch."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from deepsets.pipelines.training.run import run_training

    if os.environ.get(PRIVATE_RAY_ENV) == "1":
        # One node, started by this search and never drained: the watcher would watch nothing.
        # Each trial runs ~8 Ray processes (its own, Tune's result queue, Ray Train's controller,
        # cleaner, synchronizer, dataset manager, watcher, worker); two at once on 2 cores reached
        # the 16 the raylet warns at ("8 PYTHON worker processes ... 4x the maximum expected
        # startup concurrency") when the watchers started. Ray Train passes the switch on to its controller.
        os.environ[PREEMPTION_WATCHER_ENV] = "0"
    trial_id = ray.tune.get_context().get_trial_id()
    raw = with_params(base, params)
    raw["tracking"]["run_name"] = f"{stamp}-{trial_id}"
    cfg = parse_run_config(raw, f"trial {trial_id}")
    summary = run_training(cfg, progress=False, callbacks=[TuneReportCallback()])
    path = Path(out) / TRIALS / f"{trial_id}.json"
    path.write_text(json.dumps({"params": params, **summary}, default=str), encoding="utf-8")


def _asha(epochs: int, grace: int, reduction: int):
    """ASHA on the selection score that lets a trial reach its last epoch run to its end.

    ASHA may stop a trial at any rung, the last epoch included (epochs 2 with grace 1 and
    reduction 2 puts a rung there). Stopped then, the trial's training is done and only the
    logging of its model is left, which the stop would cut off: the decision saves nothing
    and loses the model, so a result at the last epoch always continues.
    """
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class FinishLastEpoch(ASHAScheduler):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.stopped: Set[str] = set()  # ids of the trials ASHA stopped (a time budget stops others)

        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if result.get("training_iteration", 0) >= epochs:
                return TrialScheduler.CONTINUE
            if decision == TrialScheduler.STOP:
                self.stopped.add(trial.trial_id)
            return decision

    # max_t one past the last epoch: ASHA stops any trial that reaches max_t
    return FinishLastEpoch(
        metric=SCORE_KEY, mode="max", max_t=epochs + 1, grace_period=grace, reduction_factor=reduction
    )


def _trial_rows(
    results, out: Path, selection: Selection, epochs: int, stamp: str, asha_stopped: Set[str], budget: bool
) -> List[dict]:
    """One row per trial: settings, status, best selected metric and its epoch, model.

    Args:
        asha_stopped: ids of the trials ASHA stopped; any other trial that ended without its
            model was stopped by the time budget (``budget``).
    """
    rows = []
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path or "?").name
        saved_path = out / TRIALS / f"{trial_id}.json"
        saved = json.loads(saved_path.read_text(encoding="utf-8")) if saved_path.exists() else {}
        history = result.metrics_dataframe
        ran = int(history["training_iteration"].max()) if history is not None and len(history) else 0
        best_value, best_epoch = math.nan, None
        if history is not None and len(history) and selection.metric in history:
            scores = history[SCORE_KEY] if SCORE_KEY in history else history[selection.metric]
            at = int(scores.astype(float).fillna(-math.inf).idxmax())
            best_value, best_epoch = (
                float(history[selection.metric].iloc[at]),
                int(history["training_iteration"].iloc[at]),
            )
        if result.error:
            status = redact_uris(
                f"error: {str(result.error).strip().splitlines()[-1] if str(result.error).strip() else type(result.error).__name__}"
            )
        elif saved:
            status = "completed" if ran >= epochs else f"stopped early by patience after epoch {ran}"
        elif trial_id in asha_stopped or not budget:
            status = f"stopped by ASHA after epoch {ran}"
        elif ran:
            status = f"stopped by the time budget after epoch {ran}"
        else:
            status = "stopped by the time budget before its first epoch"
        rows.append(
            {
                "trial": trial_id,
                "params": result.config,
                "status": status,
                "epochs": ran,
                "best": best_value,
                "best_epoch": best_epoch,
                "model_uri": saved.get("model_uri"),
                "run_id": saved.get("run_id"),
                "run_name": f"{stamp}-{trial_id}",
            }
        )
    return rows


def markdown(rows: List[dict], metric: str, keys: Sequence[str]) -> str:
    """The trials as a Markdown table, best first."""
    lines = [
        "| trial | " + " | ".join(keys) + f" | best {metric} | at epoch | status | model |",
        "|---|" + "---|" * (len(keys) + 4),
    ]
    for r in rows:
        value = "-" if r["best"] is None or math.isnan(r["best"]) else f"{r['best']:.4f}"
        shown = [f"{r['params'][k]:.4g}" if isinstance(r["params"][k], float) else str(r["params"][k]) for k in keys]
        lines.append(
            f"| {r['trial']} | "
            + " | ".join(shown)
            + f" | {value} | {r['best_epoch'] or '-'} | {r['status']} | {r['model_uri'] or '-'} |"
        )
    return "\n".join(lines) + "\n"


def run_tune(
    config: str,
    space_path: Optional[str] = None,
    *,
    overrides: Sequence[str] = (),
    trials: Optional[int] = None,
    budget_s: Optional[float] = None,
    out: Optional[str] = None,
    overwrite: bool = False,
    mlflow_uri: str = "",
    ray_address: Optional[str] = None,
    progress: bool = True,
) -> dict:
    """Search the space; returns the summary ``deepsets tune --json`` prints.

    Args:
        space_path: the space TOML; None searches :func:`~.space.default_space`.
        trials: configurations to try (default: the space's ``trials``; else 8, or as many as
            ``budget_s`` allows).
        budget_s: wall-clock seconds for the whole search: Tune starts no trial after it and
            stops the running ones; the best trial that ended is reported.
        overwrite: replace an earlier search's outputs in ``out`` (refused otherwise).
        mlflow_uri: the tracking URI when the run config gives none (the CLI passes
            ``MLFLOW_TRACKING_URI``); without either, ``./mlflow.db``.

    Raises:
        ConfigError: a bad run config or space, or a run with no validation metric to compare.
        JobError: ``out`` holds an earlier search and ``overwrite`` is False.
        DataError: bad training data (found while fitting the shared spec).
    """
    import mlflow
    from ray import tune

    started = time.perf_counter()
    say = (
        functools.partial(print, flush=True) if progress else (lambda *a: None)
    )  # flushed: a log shows each line as it comes
    cfg = load_run_config(config, overrides)
    selection = Selection.of(
        cfg.training.select, cfg.training.patience, cfg.model.task, cfg.task.k, bool(cfg.data.valid)
    )
    if selection.metric is None:
        raise ConfigError(
            config,
            ['training.select: tune compares trials on a validation metric: give data.valid (and not select = "last")'],
        )
    space = load_space(space_path) if space_path else default_space(cfg.as_dict())
    check_values(space, cfg.as_dict(), space_path or "default space")
    samples = trials or space.trials or (-1 if budget_s else 8)  # -1: Tune samples until the budget ends
    stamp = time.strftime("tune-%Y%m%d-%H%M%S")
    out_dir = Path(out or stamp).absolute()
    prepare_output(out_dir, overwrite)
    if not space_path:
        say("no --space: searching the default space: " + "; ".join(p.describe() for p in space.params))
    spec = (
        FeatureSpec.load(cfg.data.spec)
        if cfg.data.spec
        else FeatureSpec.fit(cfg.feature_schema(), cfg.data.train, progress=progress)
    )
    spec.save(out_dir / "spec.json")
    quiet_mlflow_logs()
    uri = require_unredacted(cfg.tracking.mlflow_uri or mlflow_uri or cfg.tracking.resolved_mlflow_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    with mlflow.start_run(run_name=stamp, tags={"deepsets.tune": "parent"}) as parent:
        mlflow.log_params({f"space.{p.key}": f"{p.distribution} {list(p.values)}" for p in space.params})
        if budget_s:
            mlflow.log_param("budget_s", budget_s)
    base = cfg.as_dict()
    base["data"]["spec"] = str(out_dir / "spec.json")
    base["tracking"].update(mlflow_uri=uri, parent_run_id=parent.info.run_id, storage_path=str(out_dir / "ray_results"))
    per_trial = cfg.scaling.workers * cfg.scaling.cpus_per_worker + TRIAL_CPU
    # a local Ray started here ends with the search: any process of it (a stopped trial's
    # workers included) still running after a grace period is ended by pid
    with private_ray(ray_address, math.ceil(per_trial * (min(samples, 2) if samples > 0 else 2))):
        import ray

        concurrent = max(1, int(ray.cluster_resources().get("CPU", 1) // per_trial))
        concurrent = min(concurrent, samples) if samples > 0 else concurrent
        say(
            f"tuning {len(space.params)} setting(s) over {f'{samples} trials' if samples > 0 else 'as many trials as the budget allows'}"
            f"{f' within {budget_s:g} s' if budget_s else ''}, {concurrent} at a time, on {selection.metric}; "
            f"ASHA grace {space.grace_epochs} epoch(s), reduction {space.reduction_factor}; output in {out_dir}"
        )
        scheduler = _asha(cfg.training.epochs, min(space.grace_epochs, cfg.training.epochs), space.reduction_factor)
        trainable = tune.with_parameters(_trial, base=base, out=str(out_dir), stamp=stamp)
        tuner = tune.Tuner(
            tune.with_resources(
                trainable, {"cpu": TRIAL_CPU}
            ),  # a token share: the Ray Train run inside reserves its workers' CPUs
            param_space=space.tune_space(),
            tune_config=tune.TuneConfig(
                num_samples=samples, scheduler=scheduler, max_concurrent_trials=concurrent, time_budget_s=budget_s
            ),
            run_config=tune.RunConfig(
                name=stamp,
                storage_path=str(out_dir / "tune"),
                verbose=0,
                callbacks=[trial_progress(selection.metric, progress), orphan_sweeper()],
            ),
        )
        # Tune's own report (a settings box, a TensorBoard hint) prints even at verbose=0 unless its
        # older output path is chosen; the progress callback above says what a user needs
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        results = tuner.fit()
        remove_orphaned_placement_groups()  # the trials stopped last, after the sweeper's last look
        rows = _trial_rows(results, out_dir, selection, cfg.training.epochs, stamp, scheduler.stopped, bool(budget_s))
    summary = _report(rows, cfg, space, selection, out_dir, uri, parent.info.run_id, say)
    summary.update(budget_s=budget_s, seconds=round(time.perf_counter() - started, 1))
    return summary


def _report(
    rows: List[dict], cfg: RunConfig, space: SearchSpace, selection: Selection, out: Path, uri: str, parent_id: str, say
) -> dict:
    """Write the trial table and ``best.toml`` (the best trial that logged its model; failing
    that, the best with a metric), log the files written now to the parent run, return the summary."""
    from mlflow.tracking import MlflowClient

    sign = 1.0 if selection.higher_is_better else -1.0
    rows.sort(key=lambda r: -math.inf if math.isnan(r["best"]) else sign * r["best"], reverse=True)
    keys = [p.key for p in space.params]
    (out / "trials.json").write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    (out / "trials.md").write_text(markdown(rows, selection.metric, keys), encoding="utf-8")
    summary = {"trials": rows, "metric": selection.metric, "output": str(out), "parent_run_id": parent_id}
    finished = [r for r in rows if r["model_uri"] and not math.isnan(r["best"])] or [
        r for r in rows if not math.isnan(r["best"])
    ]
    if finished:
        best = with_params(cfg.as_dict(), finished[0]["params"])
        best["tracking"].update(run_name="", parent_run_id="")
        (out / "best.toml").write_text(
            config_toml(parse_run_config(best, "best trial")), encoding="utf-8"
        )  # passwords redacted
        summary.update(best=finished[0], best_toml=str(out / "best.toml"))
    client = MlflowClient(uri)
    for name in ("trials.md", "trials.json", "best.toml") if finished else ("trials.md", "trials.json"):
        client.log_artifact(parent_id, str(out / name), artifact_path="tune")  # only what this search wrote
    if finished:
        client.log_metric(parent_id, f"best_{selection.metric}", finished[0]["best"])
    for row in rows:  # say in each trial's own MLflow run how it ended (ASHA or the budget stops a trial mid-run)
        for run in client.search_runs(
            [client.get_run(parent_id).info.experiment_id],
            filter_string=f"tags.`deepsets.run_name` = '{row['run_name']}'",
        ):
            client.set_tag(run.info.run_id, "deepsets.tune_status", row["status"])
            # ASHA or the budget stopped the trial mid-run: its process was killed (RUNNING left
            # behind) or its Ray Train run was aborted first and the trial marked it FAILED on the way out
            stopped = row["status"].startswith("stopped by")
            if run.info.status == "RUNNING" or (stopped and run.info.status == "FAILED"):
                client.set_terminated(run.info.run_id, "KILLED")
    say(markdown(rows, selection.metric, keys))
    say(
        f"best: {summary['best_toml']} (deepsets train --config {summary['best_toml']})"
        if finished
        else "no trial finished an epoch"
    )
    return summary
