"""Training throughput on Ray Train: 1 worker vs 2 workers, same data, same global batch; and
one worker trained in process (no Ray) beside one Ray Train worker.

    python -m benchmarks.speed.ray_train --quick

Runs ``deepsets train``'s recipe (deepsets.pipelines.training.run.run_training) three times on
the reference workload in one process: one worker in process (``scaling.trainer = in_process``),
then one and two Ray Train workers on one local Ray. D=64, one transformer layer per sequence
modality, transformer fusion, global batch 512, 2 epochs, one torch thread per worker. Reports
the training rows/s of the last epoch (as measured inside the workers) and the wall time of each
whole run; a Ray Train run's includes the start of Ray (the first) and of its workers. Last line:
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from deepsets.pipelines.demo import default_demo_config, make_demo_data
from deepsets.pipelines.ray_runtime import start_ray
from deepsets.pipelines.training.run import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12,000 rows")
    parser.add_argument("--rows", type=int, default=30_000)
    args = parser.parse_args()
    rows = 12_000 if args.quick else args.rows
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    result = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_demo_data(data, rows, seed=0, progress=False)
        for key, workers, trainer in (
            ("in_process", 1, "in_process"),
            ("workers1", 1, "ray_train"),
            ("workers2", 2, "ray_train"),
        ):
            cfg = default_demo_config(data, workers=workers)
            cfg = cfg.model_copy(
                update={
                    "model": cfg.model.replace(layers=1),  # as measured in RESULTS.md (the demo now uses 0)
                    "training": cfg.training.model_copy(update={"epochs": 2}),
                    "scaling": cfg.scaling.model_copy(update={"trainer": trainer}),
                    "tracking": cfg.tracking.model_copy(
                        update={
                            "run_name": f"bench-{key}",
                            "storage_path": f"{tmp}/ray",
                            "mlflow_uri": f"sqlite:///{tmp}/mlflow.db",
                        }
                    ),
                }
            )
            started = time.perf_counter()
            if trainer == "ray_train":
                start_ray(None, 3)
            summary = run_training(cfg, progress=False)
            result[f"{key}_rows_per_s"] = round(summary["metrics"]["train_rows_per_s"])
            result[f"{key}_wall_s"] = round(time.perf_counter() - started, 1)
            result[f"{key}_valid_auc"] = round(summary["metrics"]["valid_auc"], 4)
    result["speedup_2_vs_1"] = round(result["workers2_rows_per_s"] / result["workers1_rows_per_s"], 2)
    result["wall_ray_train_1_over_in_process"] = round(result["workers1_wall_s"] / result["in_process_wall_s"], 2)
    print(
        f"1 worker {result['workers1_rows_per_s']:,} rows/s, 2 workers {result['workers2_rows_per_s']:,} rows/s "
        f"({result['speedup_2_vs_1']}x); wall {result['workers1_wall_s']} s vs {result['workers2_wall_s']} s"
    )
    print(
        f"1 worker in process {result['in_process_rows_per_s']:,} rows/s, wall {result['in_process_wall_s']} s: "
        f"one Ray Train worker (Ray's start included) takes {result['wall_ray_train_1_over_in_process']}x its time"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
