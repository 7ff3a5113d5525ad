"""The ceiling on 2-vs-1-worker training speedup on this machine, without Ray and without decoding.

    python -m benchmarks.speed.scale_ceiling            # about 1 minute on 2 cores

``benchmarks/speed/scale.py`` measures training rows/s with 1 and 2 Ray Train workers. This script
trains the same model on the same rows (the demo model with one transformer layer, recsys-6,
48,000 rows, global batch 512) in plain processes with one torch thread each and every batch
read before the clock starts, so neither Ray nor Parquet decoding is in the figures:

- 1 process, batches of 512;
- 2 independent processes, batches of 256 each (no gradient exchange): what two cores give;
- 2 processes under DistributedDataParallel (gloo), batches of 256 each: plus the all-reduce.

The speedups over 1 process bound what ``benchmarks/speed/scale.py`` can reach. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

from benchmarks.speed.scaling_workload import demo_model_config, write_data

MODES = {"single": 1, "independent": 2, "ddp": 2}
"""How many processes each mode trains with."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_rows_per_second(
    rank: int, world: int, data: Path, spec_dict: dict, mode: str, batch_size: int, port: int, out
) -> None:
    """One process: read its share of the rows in local batches, train one pass, put
    ``(rows, seconds)`` of the steps after 3 warm-up steps on ``out``."""
    import torch

    torch.set_num_threads(1)
    from deepsets.builders import build_model
    from deepsets.features.reader import ParquetBatchReader
    from deepsets.features.spec import FeatureSpec
    from deepsets.optim import make_optimizer, make_scheduler
    from deepsets.pipelines.training.loop import train_step
    from deepsets.pipelines.training.objectives import Objective

    spec, cfg = FeatureSpec.from_dict(spec_dict), demo_model_config(data, workers=1)
    if mode == "ddp":
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    batches = list(
        ParquetBatchReader(
            spec,
            data / "train",
            batch_size=batch_size // world,
            label_columns=list(cfg.data.label_columns),
            drop_last=True,
            shuffle_seed=0,
            shard=(rank, world),
        )
    )
    torch.manual_seed(0)
    model = build_model(spec.model_inputs(), cfg.model_args())
    if mode == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = make_optimizer(model, cfg.training.optimizer, cfg.training.lr, cfg.training.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.training.schedule, len(batches), cfg.training.warmup_steps)
    objective, cpu = Objective.from_config(cfg, None, None), torch.device("cpu")
    model.train()
    for batch in batches[:3]:
        train_step(model, batch, objective, optimizer, scheduler, cpu)
    if mode == "ddp":
        torch.distributed.barrier()
    started, rows = time.perf_counter(), 0
    for batch in batches[3:]:
        train_step(model, batch, objective, optimizer, scheduler, cpu)
        rows += batch.num_rows
    out.put((rows, time.perf_counter() - started))
    if mode == "ddp":
        torch.distributed.destroy_process_group()


def measure(data: Path, spec_dict: dict, mode: str, batch_size: int) -> float:
    """Training rows/s of ``mode``: all processes' rows over the slowest one's seconds."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    out, world, port = context.Queue(), MODES[mode], free_port()
    processes = [
        context.Process(target=train_rows_per_second, args=(rank, world, data, spec_dict, mode, batch_size, port, out))
        for rank in range(world)
    ]
    for process in processes:
        process.start()
    found = [out.get() for _ in processes]
    for process in processes:
        process.join()
    return sum(rows for rows, _ in found) / max(seconds for _, seconds in found)


def main() -> None:
    from deepsets.features.schema import load_schema
    from deepsets.features.spec import FeatureSpec

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rows", type=int, default=48_000, help="training rows (default 48,000, as benchmarks/speed/scale.py)"
    )
    parser.add_argument("--batch-size", type=int, default=512, help="global batch (default 512)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "data", args.rows, row_group_rows=1_024)
        spec_dict = FeatureSpec.fit(
            load_schema(data / "schema.toml"), data / "train", validate=False
        ).to_dict()  # fitted once, for every process
        rates = {mode: measure(data, spec_dict, mode, args.batch_size) for mode in MODES}
    for mode, rate in rates.items():
        print(f"{mode:12s} {MODES[mode]} process(es): {rate:8,.0f} rows/s  ({rate / rates['single']:.2f}x one process)")
    print(
        json.dumps(
            {
                "rows": args.rows,
                "batch_size": args.batch_size,
                "rows_per_s": {m: round(r) for m, r in rates.items()},
                "speedup_independent_2_vs_1": round(rates["independent"] / rates["single"], 3),
                "speedup_ddp_2_vs_1": round(rates["ddp"] / rates["single"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
