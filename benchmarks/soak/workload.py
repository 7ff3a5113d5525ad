"""The soak's small generated workload: demo data, its fitted spec and a one-worker run config."""

from __future__ import annotations

from pathlib import Path


def prepare(work: Path, rows: int) -> dict:
    """The workload (train / valid Parquet), its spec and a run config for 1 worker, 2 epochs."""
    from deepsets.features.schema import load_schema
    from deepsets.features.spec import FeatureSpec
    from deepsets.pipelines.demo import default_demo_config, make_demo_data

    data = work / "data"
    make_demo_data(data, rows, seed=0, progress=False)
    FeatureSpec.fit(load_schema(data / "schema.toml"), data / "train", progress=False).save(work / "spec.json")
    cfg = default_demo_config(data, workers=1)
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"spec": str(work / "spec.json")}),
            "model": cfg.model.model_copy(update={"dim": 32}),
            "training": cfg.training.model_copy(update={"epochs": 2, "batch_size": 256}),
            "tracking": cfg.tracking.model_copy(
                update={"storage_path": str(work / "ray_results"), "mlflow_uri": f"sqlite:///{work / 'mlflow.db'}"}
            ),
        }
    )
    (work / "run.toml").write_text(cfg.to_toml())
    return {"data": data, "config": work / "run.toml"}
