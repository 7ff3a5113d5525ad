"""Data-parallel scaling of training: rows decoded per worker, and rows/s with 2 workers vs 1.

    python -m benchmarks.speed.scale --quick
    python -m benchmarks.speed.scale --plan-only     # what each worker decodes, in-process, seconds

Writes the reference workload (recsys-6) with row groups of 1,024 rows (8 training files), then
trains the demo model (``deepsets train``'s recipe, one local Ray) for one epoch with 1, 2 and 4
workers and reads from each run's epoch metrics the rows decoded over all workers
(``train_rows_decoded``), by the busiest worker (``train_rows_decoded_max_worker``), the rows
dropped to keep shares even, and the training rows/s measured inside the workers (2 epochs for
the 1- and 2-worker runs, the last epoch counted). The same plan is also read for a layout
that puts every cut between shares inside a row group (3 files of one row group each; read in
this process, no training). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.speed.scaling_workload import demo_model_config, write_data
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.ray_runtime import start_ray
from deepsets.pipelines.training.run import run_training


def train(data: Path, tmp: str, workers: int, epochs: int, batch_size: int) -> dict:
    cfg = demo_model_config(data, workers)
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"train": (str(data / "train"),), "valid": (str(data / "valid"),)}),
            "training": cfg.training.model_copy(update={"epochs": epochs, "batch_size": batch_size}),
            "tracking": cfg.tracking.model_copy(
                update={
                    "run_name": f"scale-{workers}",
                    "storage_path": f"{tmp}/ray",
                    "mlflow_uri": f"sqlite:///{tmp}/mlflow.db",
                }
            ),
        }
    )
    return run_training(cfg, progress=False)["metrics"]


def planned_decoding(data: Path, world: int, batch_size: int) -> dict:
    """What N workers' readers decode in one epoch, read in this process (no training)."""
    spec = FeatureSpec.fit(load_schema(data / "schema.toml"), data / "train", validate=False)
    per_worker = []
    for rank in range(world):
        reader = ParquetBatchReader(
            spec, data / "train", batch_size=batch_size // world, drop_last=True, shuffle_seed=0, shard=(rank, world)
        )
        for _ in reader:
            pass
        per_worker.append(reader.rows_decoded)
    return {"decoded": sum(per_worker), "max_worker": max(per_worker)}


def plan_only(rows: int, batch_size: int) -> dict:
    """Rows decoded by 1, 2 and 4 workers' readers in one epoch (the training layout and the
    3 single-group files), read in this process: the same readers and plan as training."""
    result: dict = {"rows": rows, "batch_size": batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        layouts = {
            "row_groups_1024": write_data(Path(tmp) / "data", rows, row_group_rows=1_024),
            "3_single_group_files": write_data(Path(tmp) / "one_group", rows, row_group_rows=-(-rows // 3), files=3),
        }
        for name, data in layouts.items():
            for workers in (1, 2, 4):
                found = planned_decoding(data, workers, batch_size)
                excess = (found["decoded"] - rows) / workers
                result[f"{name}_workers{workers}"] = {
                    **found,
                    "ratio": round(found["decoded"] / rows, 4),
                    "excess_rows_per_worker": round(excess),
                }
                print(
                    f"{name}, {workers} worker(s): decoded {found['decoded']:,} rows of {rows:,} ({found['decoded'] / rows:.3f}x), "
                    f"busiest worker {found['max_worker']:,}; excess per worker {excess:,.0f} rows = {excess / batch_size:.2f} global "
                    f"batches of {batch_size} = {excess / (batch_size // workers):.2f} local batches of {batch_size // workers}",
                    flush=True,
                )
    result["decoded_rows_ratio"] = result["row_groups_1024_workers4"]["ratio"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12,000 training rows")
    parser.add_argument("--rows", type=int, default=48_000, help="training rows (default 48,000)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="only what 1, 2 and 4 workers' readers decode, read in this process (no Ray, no training)",
    )
    args = parser.parse_args()
    rows = 12_000 if args.quick else args.rows
    if args.plan_only:
        print(json.dumps(plan_only(rows, args.batch_size)))
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    result: dict = {"rows": rows, "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "data", rows, row_group_rows=1_024)
        start_ray(None, 5)  # 4 workers fit (the 2-core machine is oversubscribed only in the 4-worker run)
        for workers in (1, 2, 4):
            metrics = train(data, tmp, workers, epochs=1 if workers == 4 else 2, batch_size=args.batch_size)
            decoded, most = metrics["train_rows_decoded"], metrics["train_rows_decoded_max_worker"]
            result[f"workers{workers}"] = {
                "rows_decoded": int(decoded),
                "rows_decoded_max_worker": int(most),
                "rows_dropped": int(metrics["train_rows_dropped"]),
                "rows_per_s": round(metrics["train_rows_per_s"]),
                "valid_auc": round(metrics["valid_auc"], 4),
            }
            print(
                f"{workers} worker(s): decoded {int(decoded):,} rows of {rows:,} ({decoded / rows:.3f}x), busiest worker {int(most):,} "
                f"({most / rows:.3f} of the epoch), dropped {int(metrics['train_rows_dropped'])}, {metrics['train_rows_per_s']:,.0f} rows/s",
                flush=True,
            )
        # 3 files of one row group each: every cut between 4 shares falls inside a row group
        one_group = write_data(Path(tmp) / "one_group", rows, row_group_rows=-(-rows // 3), files=3)
        worst = planned_decoding(one_group, 4, args.batch_size)
        print(
            f"3 files of one row group each, 4 workers (planned in-process): decoded {worst['decoded']:,} rows ({worst['decoded'] / rows:.3f}x)"
        )
    result["decoded_rows_ratio"] = round(result["workers4"]["rows_decoded"] / rows, 4)
    result["decoded_rows_excess_per_worker_in_batches"] = round(
        (result["workers4"]["rows_decoded"] - rows) / 4 / args.batch_size, 3
    )
    result["decoded_rows_ratio_3_single_group_files"] = round(worst["decoded"] / rows, 4)
    result["speedup_2_vs_1"] = round(result["workers2"]["rows_per_s"] / result["workers1"]["rows_per_s"], 2)
    print(
        f"2 workers vs 1: {result['speedup_2_vs_1']}x training rows/s; 4 workers decode {result['decoded_rows_ratio']}x the epoch's rows"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
