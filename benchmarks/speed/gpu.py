"""Training and embedding rows/s on GPUs, at batch 4096, and their scaling from 1 to N GPUs.

    python -m benchmarks.speed.gpu                 # on a machine with CUDA GPUs: every count 1, 2, 4, ... up to all of them
    python -m benchmarks.speed.gpu --max-gpus 2 --rows 400000
    python -m benchmarks.speed.gpu --allow-cpu --quick   # no GPU: runs the same code on CPU workers (a smoke run, not a GPU figure)

Writes the reference workload (recsys-6, row groups of 2,048 rows), then for each GPU count N
trains the demo model (``layers = 1``, the model of benchmarks/speed/ray_train.py) with
``scaling.use_gpu = true`` and N workers (bf16 autocast, pinned host batches), 2 epochs, and
reads the last epoch's training rows/s from the workers; then embeds every training row with
the trained model on N actors of one GPU each (``deepsets embed --gpus-per-worker 1``) and reads
the job's rows/s while processing. Each figure is printed beside the 1-GPU figure as a ratio.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.speed.scaling_workload import write_data
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.embedding.job import parse_embed_config, run_embed
from deepsets.pipelines.ray_runtime import start_ray
from deepsets.pipelines.training.run import run_training


def gpu_counts(available: int, limit: int) -> list:
    """1, 2, 4, ... up to ``min(available, limit)``, and that number itself."""
    top = min(available, limit)
    counts, n = [], 1
    while n <= top:
        counts.append(n)
        n *= 2
    return counts + ([top] if counts and counts[-1] != top else [])


def train(data: Path, tmp: str, workers: int, use_gpu: bool, batch_size: int, epochs: int) -> dict:
    cfg = default_demo_config(data, workers=workers)
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"train": (str(data / "train"),), "valid": (str(data / "valid"),)}),
            "model": cfg.model.model_copy(update={"layers": 1}),
            "training": cfg.training.model_copy(
                update={"epochs": epochs, "batch_size": batch_size - batch_size % workers}
            ),
            "scaling": cfg.scaling.model_copy(update={"use_gpu": use_gpu}),
            "tracking": cfg.tracking.model_copy(
                update={
                    "run_name": f"gpu-{workers}",
                    "storage_path": f"{tmp}/ray",
                    "mlflow_uri": f"sqlite:///{tmp}/mlflow.db",
                }
            ),
        }
    )
    return run_training(cfg, progress=False)


def embed(model_uri: str, data: Path, out: Path, workers: int, use_gpu: bool, batch_size: int) -> dict:
    cfg = parse_embed_config(
        model=model_uri,
        inputs=[str(data / "train")],
        output=str(out),
        batch_size=batch_size,
        workers=workers,
        gpus_per_worker=1.0 if use_gpu else 0.0,
        fragment_rows=50_000,
    )
    return run_embed(cfg, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="training rows (default 200,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--max-gpus", type=int, default=64, help="largest GPU count to measure (default: all)")
    parser.add_argument(
        "--allow-cpu", action="store_true", help="without CUDA, run the same code on 1 and 2 CPU workers"
    )
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    available = torch.cuda.device_count()
    if not available and not args.allow_cpu:
        sys.exit(
            "benchmarks.speed.gpu: no CUDA device here (torch.cuda.device_count() == 0); run it on a GPU machine, "
            "or pass --allow-cpu for a smoke run of the same code on CPU workers"
        )
    use_gpu = available > 0
    counts = gpu_counts(available, args.max_gpus) if use_gpu else [1, 2]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    device = torch.cuda.get_device_name(0) if use_gpu else "cpu (smoke run, not a GPU figure)"
    result: dict = {
        "device": device,
        "rows": rows,
        "batch_size": args.batch_size,
        "counts": counts,
        "train_rows_per_s": {},
        "embed_rows_per_s": {},
    }
    print(f"{device}: {rows:,} rows, batch {args.batch_size}, workers {counts}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "data", rows, row_group_rows=2_048)
        start_ray(None, max(counts) + 1)
        for n in counts:
            trained = train(data, tmp, n, use_gpu, args.batch_size, epochs=2)
            train_speed = trained["metrics"]["train_rows_per_s"]
            embedded = embed(trained["model_uri"], data, Path(tmp) / f"emb-{n}", n, use_gpu, args.batch_size)
            embed_speed = embedded["rows_this_run"] / max(embedded["processing_seconds"], 1e-9)
            result["train_rows_per_s"][n], result["embed_rows_per_s"][n] = round(train_speed), round(embed_speed)
            print(
                f"{n} worker(s): training {train_speed:,.0f} rows/s ({train_speed / result['train_rows_per_s'][counts[0]]:.2f}x of 1), "
                f"embedding {embed_speed:,.0f} rows/s ({embed_speed / result['embed_rows_per_s'][counts[0]]:.2f}x of 1), "
                f"valid AUC {trained['metrics']['valid_auc']:.4f}",
                flush=True,
            )
    top = counts[-1]
    result["train_scaling"] = round(result["train_rows_per_s"][top] / result["train_rows_per_s"][1], 2)
    result["embed_scaling"] = round(result["embed_rows_per_s"][top] / result["embed_rows_per_s"][1], 2)
    print(f"{top} vs 1: training {result['train_scaling']}x, embedding {result['embed_scaling']}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
