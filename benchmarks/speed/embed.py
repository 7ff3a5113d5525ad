"""Batch embedding job vs the model's forward pass alone, and the job's memory at 10x the rows.

    python -m benchmarks.speed.embed --quick

One trained reference model (the demo's, with one transformer layer per sequence modality: D=64,
transformer fusion, trained one pass over the rows) and the same recsys-6 rows through:

(a) the full job, Parquet -> Parquet: ``run_embed`` with 2 Ray Data workers of 1 CPU each,
    timed from the call to the written, counted output (model load, input checks, actor start,
    read, convert, forward, write), on a Ray that is already running (a nightly job joins a
    running cluster; starting Ray is reported apart as ``ray_start_s``);
(b) the forward pass alone on pre-collated batches, in one process with 2 torch threads,
    measured before and after the jobs; the efficiencies divide by the faster of the two.

Each job runs in a fresh subprocess (its own Ray); memory is the sum of every process's peak
RSS in that tree (driver, Ray daemons, workers), and the CPU seconds each kind of process used
are printed beside it; the 10x run embeds ten times the rows, in part files
(one fragment each) of the same size, half the small run, so both runs keep both workers busy.
A third run embeds the same 10x rows from one file written as a single row group (the layout a
writer that never cuts row groups produces): the job cuts it into ``--fragment-rows`` fragments
read in one-pass runs, and its memory must not follow the row group's size.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks.speed.in_process_training import train_in_process
from benchmarks.speed.timing import best_seconds
from deepsets.builders import build_model
from deepsets.features import synth
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import load_schema
from deepsets.features.spec import FeatureSpec
from deepsets.pipelines.demo import default_demo_config
from deepsets.pipelines.models.checkpoint import TrainState, save_checkpoint

WORKERS = 2
BATCH = 1024


def train_reference(spec: FeatureSpec, files, out: Path) -> Path:
    """The demo's model trained one pass over ``files``; saved as a checkpoint directory."""
    cfg = default_demo_config(out)  # only its [model] and [task] are used
    args = cfg.model_args().replace(layers=1)  # as measured in RESULTS.md (the demo now uses 0)
    torch.manual_seed(0)
    model = build_model(spec.model_inputs(), args)
    losses = train_in_process(model, spec, files, "clicked", "binary", batch_size=512)
    print(f"reference model: {len(losses)} steps, loss {sum(losses[:10]) / 10:.3f} -> {sum(losses[-10:]) / 10:.3f}")
    directory = out / "checkpoint"
    directory.mkdir()
    save_checkpoint(directory, TrainState(model.state_dict(), {}, {}, 0, len(losses)), spec, {}, args)
    return directory


def write_one_row_group(files, out: Path) -> Path:
    """``files`` rewritten as one Parquet file holding a single row group."""
    out.mkdir()
    path = out / "all.parquet"
    table = pq.read_table(files)
    pq.write_table(table, path, row_group_size=table.num_rows)
    del table
    os.sync()  # on disk before its job starts, like an input written earlier (not 2.7 GB of writeback during it)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    return path


def reference_batches(checkpoint: Path, files) -> tuple:
    """The reference model and ``files`` as pre-collated batches of ``BATCH`` rows, with the CPU
    seconds reading and converting them took on one thread: the least of 3 reads (the first pays
    one-time costs, a cold page cache, first calls and a growing heap, that a long job pays once)."""
    from deepsets.pipelines.models.source import load_model_source

    source = load_model_source(str(checkpoint))
    torch.set_num_threads(1)
    seconds = []
    for _ in range(3):
        started = time.process_time()
        batches = list(ParquetBatchReader(source.spec, files, batch_size=BATCH))
        seconds.append(time.process_time() - started)
    print("read + convert, CPU s of 3 reads: " + ", ".join(f"{s:.3f}" for s in seconds))
    return source.build(), batches, min(seconds)


def forward_rows_per_s(model, batches, threads: int) -> float:
    """(b): the model alone over pre-collated ``batches``, on ``threads`` torch threads, best of 2 passes."""
    torch.set_num_threads(threads)

    def one_pass() -> None:
        with torch.inference_mode():
            for batch in batches:
                model(batch)

    return sum(b.num_rows for b in batches) / best_seconds(one_pass, repeats=2)


def stage_costs(model, batches, read_s: float, forward: float) -> dict:
    """What the job's stages cost on one thread, in this process: reading and converting
    (``read_s`` CPU seconds for ``batches``), the forward pass, writing the embeddings as
    Parquet; and the rows/s that ``WORKERS`` one-thread workers doing all three would reach with
    perfect scaling and no start-up, as a share of ``forward`` (the ceiling of the job's
    efficiency on these cores)."""
    rows = sum(b.num_rows for b in batches)
    forward_1 = forward_rows_per_s(model, batches, threads=1)
    with torch.inference_mode():
        fused = torch.cat([model(b).fused for b in batches]).numpy()  # (N, D)
    started = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        flat = pa.array(fused.reshape(-1))
        pq.write_table(
            pa.table({"row": np.arange(rows), "embedding": pa.FixedSizeListArray.from_arrays(flat, fused.shape[1])}),
            f"{tmp}/out.parquet",
        )
    write_s = time.process_time() - started
    ceiling = WORKERS * rows / (read_s + rows / forward_1 + write_s)
    return {
        "read_convert_rows_per_cpu_s": round(rows / read_s),
        "forward_1_thread_rows_per_s": round(forward_1),
        "write_rows_per_cpu_s": round(rows / write_s),
        "ceiling_efficiency": round(ceiling / forward, 3),
    }


def _peak_rss(pid: int) -> int:
    """The kernel's high-water mark of a process's resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_job_measured(checkpoint: Path, inputs, out: Path) -> dict:
    """(a) in a fresh subprocess; returns its timings plus the memory of its process tree.

    Memory is each process's own peak RSS (the kernel's VmHWM, so no short peak is missed
    between samples), summed over every process of the tree (driver, Ray daemons, workers):
    an upper bound of the tree's peak, measured the same way for both runs. Shared libraries
    count once per process in both runs.
    """
    command = [sys.executable, "-m", "benchmarks.speed.embed", "--job", str(checkpoint), str(out), *map(str, inputs)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    parent = psutil.Process(child.pid)
    peaks: dict = {}
    names: dict = {}
    cpu: dict = {}
    while child.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                peaks[p.pid] = max(peaks.get(p.pid, 0), _peak_rss(p.pid))
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system  # the last sample before the process ends
                if names.get(p.pid, "?") in (
                    "?",
                    "ray::IDLE",
                ):  # unread yet, or an idle worker that becomes a MapWorker
                    names[p.pid] = _short_name(p)
            except (OSError, psutil.Error):
                continue
        time.sleep(0.1)
    output = child.stdout.read()
    if child.returncode != 0:
        raise RuntimeError(f"embedding job failed ({child.returncode}): {output[-2000:]}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(sum(peaks.values()) / 2**20)
    peaks_mb = _by_kind({pid: round(peak / 2**20) for pid, peak in peaks.items()}, names)
    result["peak_rss_mb_by_process"] = {k: sorted(v, reverse=True) for k, v in peaks_mb.items()}
    result["cpu_s_by_process"] = {k: round(sum(v), 1) for k, v in _by_kind(cpu, names).items()}
    return result


def _by_kind(per_pid: dict, names: dict) -> dict:
    """``{kind: [value per process of that kind]}``, the kinds with the largest sum first."""
    grouped: dict = {}
    for pid, value in per_pid.items():
        grouped.setdefault(names.get(pid, "?"), []).append(value)
    return dict(sorted(grouped.items(), key=lambda kv: -sum(kv[1])))


def _short_name(process) -> str:
    """A process's kind: the Ray actor or daemon name, else the executable. A Ray worker's title
    becomes its actor's name only once it runs one (``default_worker.py`` while starting, then
    ``ray::IDLE``, then ``ray::MapWorker(...)``), so callers ask again until it has."""
    try:
        title = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    for marker, kind in (
        ("MapWorker", "embed worker"),
        ("ray::IDLE", "ray::IDLE"),
        ("default_worker.py", "ray::IDLE"),
        ("DashboardAgent", "dashboard"),
        ("RuntimeEnvAgent", "runtime_env"),
        ("raylet/raylet", "raylet"),
        ("gcs_server", "gcs_server"),
        ("dashboard.py", "dashboard"),
        ("log_monitor", "log_monitor"),
        ("monitor.py", "autoscaler monitor"),
        ("--job", "driver"),
    ):
        if marker in title:
            return kind
    return title.split()[0].rsplit("/", 1)[-1] if title else "?"


def job_main(checkpoint: str, out: str, inputs) -> None:
    """The subprocess side of :func:`run_job_measured`."""
    from deepsets.pipelines.embedding.job import parse_embed_config, run_embed
    from deepsets.pipelines.ray_runtime import start_ray

    started = time.perf_counter()
    start_ray(None, WORKERS + 1)
    ray_start = time.perf_counter() - started
    cfg = parse_embed_config(model=checkpoint, inputs=list(inputs), output=out, workers=WORKERS, batch_size=BATCH)
    started = time.perf_counter()
    summary = run_embed(cfg, progress=False)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": summary["rows_out"],
                "seconds": seconds,
                "processing_s": summary["processing_seconds"],
                "ray_start_s": ray_start,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k rows (200k for the memory run) instead of 60k")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--job", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job_main(args.job[0], args.job[1], args.job[2:])
        return
    rows = args.rows or (20_000 if args.quick else 60_000)
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        tmp = Path(tmp)
        per_file = rows // 2  # 2 part files in the small run, 20 in the 10x run: one fragment each
        synth.generate(rows * 10, tmp / "data", seed=0, rows_per_file=per_file, progress=False)
        files = sorted((tmp / "data").glob("part-*.parquet"))
        small, large = files[:2], files
        spec = FeatureSpec.fit(load_schema(tmp / "data" / "schema.toml"), small, validate=False)
        checkpoint = train_reference(spec, small, tmp)
        model, batches, read_s = reference_batches(checkpoint, small)
        forward_before = forward_rows_per_s(model, batches, threads=WORKERS)
        job = run_job_measured(checkpoint, small, tmp / "out-small")
        big = run_job_measured(checkpoint, large, tmp / "out-10x")
        one_group = write_one_row_group(large, tmp / "one-row-group")
        single = run_job_measured(checkpoint, [one_group], tmp / "out-one-row-group")
        forward_after = forward_rows_per_s(model, batches, threads=WORKERS)
        # this machine's speed drifts by up to a third between minutes: the job is held to the
        # faster of the two measurements around it (a conservative denominator)
        forward = max(forward_before, forward_after)
        print(
            f"forward alone: {forward_before:,.0f} rows/s before the jobs, {forward_after:,.0f} after "
            f"({WORKERS} threads, batches of {BATCH}); the efficiencies divide by {forward:,.0f}"
        )
        stages = stage_costs(model, batches, read_s, forward)
        del model, batches
        print(
            f"one thread: read+convert {stages['read_convert_rows_per_cpu_s']:,} rows per CPU s, forward "
            f"{stages['forward_1_thread_rows_per_s']:,} rows/s, write {stages['write_rows_per_cpu_s']:,} rows per CPU s: "
            f"{WORKERS} such workers, scaling perfectly with no start-up, would reach {stages['ceiling_efficiency']:.2f} of the forward alone"
        )
        for name, r in (("small", job), ("10x", big), ("10x, one row group", single)):
            print(
                f"job ({name}), {r['rows']:,} rows: {r['rows'] / r['seconds']:,.0f} rows/s end to end ({r['seconds']:.1f} s), "
                f"{r['rows'] / r['processing_s']:,.0f} rows/s while processing ({r['processing_s']:.1f} s; "
                f"{r['seconds'] - r['processing_s']:.1f} s start-up: actors, model load, checks), peak memory {r['peak_rss_mb']} MB"
            )
        job_rate = job["rows"] / job["seconds"]
        result = {
            "rows": job["rows"],
            "job_rows_per_s": round(job_rate, 1),
            "forward_rows_per_s": round(forward, 1),
            "forward_rows_per_s_before_after": [round(forward_before, 1), round(forward_after, 1)],
            "efficiency": round(job_rate / forward, 3),
            "peak_rss_mb_small": job["peak_rss_mb"],
            "peak_rss_mb_10x": big["peak_rss_mb"],
            "memory_ratio_10x": round(big["peak_rss_mb"] / job["peak_rss_mb"], 3),
            "efficiency_steady": round(job["rows"] / job["processing_s"] / forward, 3),
            "startup_s": round(job["seconds"] - job["processing_s"], 1),
            "rows_10x": big["rows"],
            "job_rows_per_s_10x": round(big["rows"] / big["seconds"], 1),
            "efficiency_10x": round(big["rows"] / big["seconds"] / forward, 3),
            "efficiency_steady_10x": round(big["rows"] / big["processing_s"] / forward, 3),
            "efficiency_one_row_group": round(single["rows"] / single["seconds"] / forward, 3),
            "efficiency_steady_one_row_group": round(single["rows"] / single["processing_s"] / forward, 3),
            "peak_rss_mb_one_row_group": single["peak_rss_mb"],
            "memory_ratio_one_row_group": round(single["peak_rss_mb"] / job["peak_rss_mb"], 3),
            "ray_start_s": round(job["ray_start_s"], 1),
            "stages": stages,
            "workers": WORKERS,
            "batch_size": BATCH,
        }
        for name, r in (("small", job), ("10x", big), ("10x, one row group", single)):
            print(
                f"peak MB by process ({name}): " + "; ".join(f"{k} {v}" for k, v in r["peak_rss_mb_by_process"].items())
            )
            cores = os.cpu_count() or 1
            print(
                f"CPU s by process ({name}; {cores * r['seconds']:.1f} CPU s in {r['seconds']:.1f} s on {cores} cores): "
                + "; ".join(f"{k} {v}" for k, v in r["cpu_s_by_process"].items())
            )
        print(
            f"efficiency (job / forward), end to end: {result['efficiency']:.2f} at {job['rows']:,} rows, "
            f"{result['efficiency_10x']:.2f} at {big['rows']:,} (goal 0.8); while processing: "
            f"{result['efficiency_steady']:.2f} and {result['efficiency_steady_10x']:.2f}"
        )
        print(
            f"efficiency from one {big['rows']:,}-row row group: {result['efficiency_one_row_group']:.2f} end to end, "
            f"{result['efficiency_steady_one_row_group']:.2f} while processing"
        )
        print(
            f"peak memory at 10x rows / small: {result['memory_ratio_10x']:.2f}; from one row group: "
            f"{result['memory_ratio_one_row_group']:.2f} (goal <= 1.2)"
        )
        print(json.dumps(result))


if __name__ == "__main__":
    main()
