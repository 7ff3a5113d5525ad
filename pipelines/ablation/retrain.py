"""``deepsets ablate --retrain``: one new training run per removed modality, in parallel.

Masking a modality in a trained model asks "how much does this model lean on it"; retraining
without it asks "how much would we lose if we dropped it" (the other modalities may make up for
it). Recipe:

    plan    -- the model's own run config (from its checkpoint or its MLflow run's config.toml),
               with ``data.spec`` set to the model's spec minus one modality; plus one baseline
               run with every modality, so the drops compare like with like (same epochs, seeds);
    train   -- every run is a Ray task calling :func:`deepsets.pipelines.training.run.run_training`, so they run
               side by side as far as the cluster's CPUs allow; each is its own MLflow run,
               nested under one parent run (tag ``mlflow.parentRunId``);
    compare -- each retrained model scores the ablation rows; the drop is baseline metric minus
               retrained metric, with a paired bootstrap interval over the same resamples.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

import torch

from deepsets.features import storage
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.spec import FeatureSpec
from deepsets.inference import collect_outputs
from deepsets.pipelines.ablation.report import table_row
from deepsets.pipelines.config import RunConfig, parse_run_config
from deepsets.pipelines.models.source import ModelSource, load_model_source
from deepsets.tasks import ablation_metric

BASELINE = "(none)"


def retrain_configs(
    base: RunConfig, spec: FeatureSpec, out: str, stamp: str, parent_run_id: str, tracking_uri: str
) -> Dict[str, RunConfig]:
    """Removed modality (``BASELINE`` for none) -> ``base`` changed to train without it (the
    spec minus that modality, its own run name, nested under ``parent_run_id``)."""
    configs = {}
    for removed in [BASELINE, *spec.names]:
        kept = spec if removed == BASELINE else spec.subset([n for n in spec.names if n != removed])
        spec_path = storage.join(out, f"spec-without-{'nothing' if removed == BASELINE else removed}.json")
        kept.save(spec_path)
        tag = "baseline" if removed == BASELINE else f"without-{removed}"
        configs[removed] = base.model_copy(
            update={
                "data": base.data.model_copy(update={"spec": str(spec_path)}),
                "tracking": base.tracking.model_copy(
                    update={
                        "run_name": f"{stamp}-{tag}",
                        "storage_path": storage.join(out, "ray_results"),
                        "mlflow_uri": tracking_uri,
                        "parent_run_id": parent_run_id,
                    }
                ),
            }
        )
    return configs


def _train_all(configs: Dict[str, RunConfig], progress: bool) -> Dict[str, dict]:
    """Run every config as a Ray task; returns removed modality -> training summary."""
    import ray

    from deepsets.pipelines.training.run import chosen_trainer, run_training

    @ray.remote
    def train(cfg_dict: dict) -> dict:
        return run_training(parse_run_config(cfg_dict, "<retrain>"), progress=False)

    def cpus(cfg: RunConfig) -> float:
        """An in-process retrain trains in its task, which reserves its CPUs; Ray Train's
        workers reserve theirs, so the task itself then takes none."""
        return cfg.scaling.cpus_per_worker if chosen_trainer(cfg, None, ()) == "in_process" else 0

    pending = {train.options(num_cpus=cpus(cfg)).remote(cfg.as_dict()): removed for removed, cfg in configs.items()}
    done: Dict[str, dict] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        removed = pending.pop(ready[0])
        done[removed] = ray.get(ready[0])
        if progress:
            print(
                f"  retrained {'with every modality' if removed == BASELINE else 'without ' + removed}: "
                f"{done[removed]['seconds']} s, run {done[removed]['run_id']}"
            )
    return done


def _scores(summary: dict, inputs: List[str], label: str, batch_size: int) -> torch.Tensor:
    """The retrained model's logits on the ablation rows, in row order: ``(N, K)``."""
    source = load_model_source(summary["checkpoint"])
    reader = ParquetBatchReader(source.spec, inputs, batch_size=batch_size, label_columns=[label])
    return collect_outputs(source.build(), reader, ("logits",))["logits"]


def retrain_table(
    source: ModelSource,
    inputs: List[str],
    label: str,
    target: torch.Tensor,
    task: str,
    out: str,
    boot: Optional[torch.Tensor],
    batch_size: int,
    progress: bool,
) -> tuple[List[dict], dict]:
    """Retrain without each modality and compare on the ablation rows.

    Returns:
        ``(rows, info)``: one table row per modality (method ``retrain``: value = the retrained
        metric, delta = baseline minus it), and the parent run and each run's id.
    """
    import mlflow

    from deepsets.pipelines.ray_processes import private_ray

    storage.make_dirs(out)
    stamp = time.strftime("ablate-%Y%m%d-%H%M%S")
    tracking_uri = mlflow.get_tracking_uri()
    base = parse_run_config(source.run_config, f"{source.uri} config")  # run_ablate checked that there is one
    mlflow.set_experiment(base.tracking.experiment)
    with mlflow.start_run(run_name=f"{stamp}-retrain", tags={"deepsets.ablation_of": source.uri}) as parent:
        parent_id = parent.info.run_id
    configs = retrain_configs(base, source.spec, out, stamp, parent_id, tracking_uri)
    with private_ray(
        None, os.cpu_count() or 2
    ):  # a local Ray started here ends with the retraining, leftovers ended by pid
        if progress:
            print(
                f"retraining {len(configs)} runs (one without each modality, one baseline) as Ray tasks; parent MLflow run {parent_id}"
            )
        trained = _train_all(configs, progress)

    def metric(logits, rows=None):
        return ablation_metric(task, logits if rows is None else logits[rows], target if rows is None else target[rows])

    scores = {removed: _scores(summary, inputs, label, batch_size) for removed, summary in trained.items()}
    baseline = scores[BASELINE]
    baseline_value = float(metric(baseline))
    rows = []
    for removed in source.spec.names:
        value = float(metric(scores[removed]))
        samples = (
            None
            if boot is None
            else torch.stack([metric(baseline, idx) - metric(scores[removed], idx) for idx in boot])
        )
        rows.append(table_row("retrain", removed, value, baseline_value - value, samples))
    info = {
        "parent_run_id": parent_id,
        "baseline": baseline_value,
        "runs": {("baseline" if k == BASELINE else k): v["run_id"] for k, v in trained.items()},
    }
    return rows, info
