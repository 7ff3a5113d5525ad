"""Soak: jobs of every command back to back, counting what each one leaves behind.

    python -m benchmarks.soak [--quick] [--embed-jobs N] [--jobs N] [--in-process N] [--rows N] [--workdir DIR]

A nightly batch job runs every night for months, and whatever one run leaves behind piles up.
This runs ``deepsets embed`` (1 and 2 workers, alternately), ``train``, ``ablate``, ``retrieve``
and ``tune`` on a small generated workload, each as its own command-line process with its own
local Ray, as a scheduler would; then ``embed``, ``retrieve`` and ``ablate`` again through the
Python API in this one process, to watch the driver's file descriptors and threads.

After each job it counts what is left:
    processes  -- every process seen below the job's process while it ran (polled), and every
                  worker its Ray session's logs name (the session folder carries the job's pid),
                  still running once the job has exited; never matched by name. Any found is
                  dumped with py-spy (when installed), then ended, and counted;
    reaped     -- processes the job itself had to end after its Ray's shutdown (its
                  ``warning: process ...`` lines; see deepsets.pipelines.ray_processes);
    files      -- lock files (``_job.lock``, a held ``run.claim``) and temporary files (``*.tmp*``)
                  left in the job's output folder;
    memory     -- the machine's used memory (noisy: other work shares the machine), and for the
                  in-process jobs this process's open fds, threads and resident memory.

One line per job; the last line is one JSON object (``jobs``, ``leftover_processes``,
``leftover_fds``, ``leftover_mb``, ``max_rss_growth_mb``, ...). The exit status is 1 when any
job failed or left a process, a lock or temporary file, or a file descriptor behind.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import psutil

from deepsets.pipelines.ray_processes import (
    ProcessRecord,
    end_leftovers,
    logged_worker_pids,
    open_fds,
    records_since,
    session_dirs_of,
    with_descendants,
)

POLL_S = 0.3
ORPHAN_DUMP_S = 5.0
"""A process of the job re-parented (its parent gone) this long is dumped with py-spy while the
job still runs: an actor normally outlives its raylet only for a moment at shutdown."""
SETTLE_S = 2.0
"""After a job's process exits, how long its processes get before they count as left behind."""
REAPED_PREFIX = "warning: process "


def used_mb() -> float:
    """The machine's used memory, in MB."""
    return psutil.virtual_memory().used / 2**20


def dump_stacks(pid: int, path: Path) -> None:
    """``py-spy dump --native`` of a process (its C++ frames too: Ray's core worker) into ``path``
    (nothing when py-spy is not installed)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(spy):
        return
    try:
        done = subprocess.run([spy, "dump", "--native", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
        path.write_text(done.stdout + done.stderr)
    except (OSError, subprocess.TimeoutExpired) as err:
        path.write_text(f"py-spy failed: {err}")


def leftover_files(folder: Path) -> List[str]:
    """Lock and temporary files under ``folder``: ``_job.lock``, a ``run.claim`` whose lock is
    held, and anything named ``*.tmp*``."""
    found = []
    if not folder.exists():
        return found
    for path in folder.rglob("*"):
        name = path.name
        if name == "_job.lock" or ".tmp" in name or (name == "run.claim" and _held(path)):
            found.append(str(path.relative_to(folder)))
    return found


def _held(path: Path) -> bool:
    """Whether some process holds the kernel lock on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class CliJob:
    """One ``deepsets`` command in its own process, its descendants polled while it runs."""

    def __init__(self, name: str, argv: List[str], out: Path, env: Dict[str, str], logs: Path) -> None:
        self.name, self.argv, self.out, self.env, self.logs = name, argv, out, env, logs

    def run(self, index: int) -> dict:
        """Run the job; returns its line's counts."""
        stdout, stderr = self.logs / f"{index:03d}-{self.name}.out", self.logs / f"{index:03d}-{self.name}.err"
        before = used_mb()
        started = time.time()
        with open(stdout, "w") as out, open(stderr, "w") as err:
            job = subprocess.Popen(
                [sys.executable, "-m", "deepsets.pipelines.cli", *self.argv], stdout=out, stderr=err, env=self.env
            )
            seen: Dict[int, ProcessRecord] = {}
            orphaned: Dict[int, float] = {}  # pid -> when first seen re-parented
            while job.poll() is None:
                for record in with_descendants([job.pid]):
                    if record.pid != job.pid:
                        seen.setdefault(record.pid, record)
                self._dump_orphans(seen, orphaned, job.pid, index)
                time.sleep(POLL_S)
        seconds = time.time() - started
        for session in session_dirs_of(job.pid):
            for record in records_since(logged_worker_pids(session), started):
                seen.setdefault(record.pid, record)
        time.sleep(SETTLE_S)
        left = [r for r in seen.values() if r.running() is not None]
        for record in left:
            dump_stacks(record.pid, self.logs / f"{index:03d}-{self.name}-left-{record.pid}.stacks")
        end_leftovers(left, grace_s=0.0, report=lambda line: None)  # the soak leaves the machine as it found it
        reaped = [line for line in stderr.read_text().splitlines() if line.startswith(REAPED_PREFIX)]
        return {
            "job": index,
            "command": self.name,
            "exit": job.returncode,
            "seconds": round(seconds, 1),
            "processes_seen": len(seen),
            "leftover_processes": [{"pid": r.pid, "command": r.command[:120]} for r in left],
            "reaped": reaped,
            "leftover_files": leftover_files(self.out),
            "used_mb": round(used_mb()),
            "used_mb_change": round(used_mb() - before),
        }

    def _dump_orphans(
        self, seen: Dict[int, ProcessRecord], orphaned: Dict[int, float], job_pid: int, index: int
    ) -> None:
        """py-spy dump of each process of the job whose parent has been gone for :data:`ORPHAN_DUMP_S` but that still runs."""
        for record in seen.values():
            process = record.running()
            if process is None or orphaned.get(record.pid) == -1.0:
                continue
            try:
                parent = process.ppid()
            except psutil.Error:
                continue
            if parent == job_pid or parent in seen:
                continue
            since = orphaned.setdefault(record.pid, time.monotonic())
            if time.monotonic() - since >= ORPHAN_DUMP_S:
                orphaned[record.pid] = -1.0  # dumped once
                dump_stacks(record.pid, self.logs / f"{index:03d}-{self.name}-orphan-{record.pid}.stacks")


def json_tail(path: Path) -> dict:
    """The JSON object a ``--json`` job printed last."""
    return json.loads(path.read_text().strip().splitlines()[-1])


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


def schedule(embed_jobs: int, jobs: int, trials: int, work: Path, data: Path, config: Path) -> List[tuple]:
    """``(name, argv, output folder)`` per job: an embed job with 1 worker and one with 2 first
    (retrieve ranks the first's rows among the second's), then the other commands spread evenly
    among the embed jobs. The training job that made the model counts as the first of ``jobs``."""

    def embed(i: int) -> tuple:
        workers = 1 + i % 2
        out = work / f"embed_w{workers}"
        return (
            f"embed-w{workers}",
            [
                "embed",
                "--model",
                "{model}",
                "--input",
                str(data / "valid"),
                "--output",
                str(out),
                "--workers",
                str(workers),
                "--fragment-rows",
                "200",
                "--overwrite",
                "--json",
            ],
            out,
        )

    def other(kind: str, i: int) -> tuple:
        if kind == "train":
            return (
                "train",
                ["train", "--config", str(config), "--set", f"tracking.run_name=soak-train-{i}", "--json"],
                work / "ray_results" / f"soak-train-{i}",
            )
        if kind == "ablate":
            return (
                "ablate",
                [
                    "ablate",
                    "--model",
                    "{model}",
                    "--input",
                    str(data / "valid"),
                    "--methods",
                    "loo,only",
                    "--bootstrap",
                    "0",
                    "--no-mlflow",
                    "--out",
                    str(work / "ablation"),
                    "--overwrite",
                    "--json",
                ],
                work / "ablation",
            )
        if kind == "retrieve":
            return (
                "retrieve",
                [
                    "retrieve",
                    "--items",
                    str(work / "embed_w2"),
                    "--queries",
                    str(work / "embed_w1"),
                    "--k",
                    "10",
                    "--out",
                    str(work / "top"),
                    "--overwrite",
                    "--json",
                ],
                work / "top",
            )
        return (
            "tune",
            ["tune", "--config", str(config), "--trials", str(trials), "--out", str(work / f"tune-{i}"), "--json"],
            work / f"tune-{i}",
        )

    others = [
        other(kind, i)
        for i in range(jobs)
        for kind in ("train", "ablate", "retrieve", "tune")
        if not (kind == "train" and i == 0)
    ]
    embeds = [embed(i) for i in range(embed_jobs)]
    order, embeds = embeds[:2], embeds[2:]
    every = -(-len(embeds) // max(1, len(others)))
    while embeds or others:
        if others:
            order.append(others.pop(0))
        order.extend(embeds[:every])
        embeds = embeds[every:]
    return order


def in_process_jobs(count: int, work: Path, model: str, data: Path, say) -> dict:
    """``count`` rounds of ``embed`` (1 worker, then 2), ``retrieve`` and ``ablate`` through the
    Python API in this process; the driver's fds, threads and resident memory after each round,
    compared with after the first (which loads the libraries and starts each kind of job once)."""
    from deepsets.pipelines.ablation.config import parse_ablate_config
    from deepsets.pipelines.ablation.job import run_ablate
    from deepsets.pipelines.embedding.job import parse_embed_config, run_embed
    from deepsets.pipelines.retrieval.job import parse_retrieve_config, run_retrieve

    me = psutil.Process()
    rows, first, leftover = [], None, []
    for i in range(count):
        started = time.time()
        for workers in (1, 2):
            run_embed(
                parse_embed_config(
                    model=model,
                    inputs=[str(data / "valid")],
                    output=str(work / "inproc_embed"),
                    workers=workers,
                    fragment_rows=200,
                    overwrite=True,
                ),
                progress=False,
            )
        run_retrieve(
            parse_retrieve_config(
                items=str(work / "embed_w2"),
                queries=str(work / "inproc_embed"),
                k=10,
                out=str(work / "inproc_top"),
                overwrite=True,
            ),
            progress=False,
        )
        run_ablate(
            parse_ablate_config(
                model=model,
                inputs=[str(data / "valid")],
                out=str(work / "inproc_ablation"),
                methods=["loo"],
                bootstrap=0,
                log_mlflow=False,
                overwrite=True,
            ),
            progress=False,
        )
        time.sleep(SETTLE_S)
        left = [r for r in with_descendants([os.getpid()]) if r.pid != os.getpid()]
        for session in session_dirs_of(os.getpid()):
            left += [
                r
                for r in records_since(logged_worker_pids(session), started)
                if r.running() is not None and r.pid not in {x.pid for x in left}
            ]
        end_leftovers(left, grace_s=0.0, report=lambda line: None)
        leftover += left
        row = {
            "round": i,
            "fds": open_fds(),
            "threads": me.num_threads(),
            "python_threads": threading.active_count(),
            "non_daemon_threads": sorted(
                t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()
            ),
            "rss_mb": round(me.memory_info().rss / 2**20),
            "leftover_processes": len(left),
            "leftover_files": leftover_files(work / "inproc_embed")
            + leftover_files(work / "inproc_top")
            + leftover_files(work / "inproc_ablation"),
        }
        first = first or row
        say(
            f"in-process round {i} (embed with 1 and 2 workers, retrieve, ablate): fds {row['fds']} ({row['fds'] - first['fds']:+d}), "
            f"threads {row['threads']} ({row['threads'] - first['threads']:+d}), rss {row['rss_mb']} MB ({row['rss_mb'] - first['rss_mb']:+d}), "
            f"left {len(left)} process(es), {len(row['leftover_files'])} lock/tmp file(s)"
        )
        rows.append(row)
    return {"rounds": rows, "leftover_processes": len(leftover)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few jobs of each command (CI): 2 embed jobs, 1 of each other (tune: 1 trial), 2 in-process rounds",
    )
    parser.add_argument(
        "--embed-jobs", type=int, default=None, help="embed jobs as CLI processes (default 100; --quick: 2)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="jobs of each other command: train, ablate, retrieve, tune (default 20; --quick: 1)",
    )
    parser.add_argument(
        "--in-process",
        type=int,
        default=None,
        help="rounds of embed (1 and 2 workers) + retrieve + ablate in this process (default 10; --quick: 2)",
    )
    parser.add_argument("--rows", type=int, default=3000, help="rows of the generated workload (default 3000)")
    parser.add_argument(
        "--workdir", default=None, help="working folder (default: a new temporary one, removed at the end)"
    )
    args = parser.parse_args(argv)
    embed_jobs = args.embed_jobs if args.embed_jobs is not None else (2 if args.quick else 100)
    jobs = args.jobs if args.jobs is not None else (1 if args.quick else 20)
    rounds = args.in_process if args.in_process is not None else (2 if args.quick else 10)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="deepsets-soak-")).absolute()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.pop("RAY_ADDRESS", None)
    env = dict(os.environ)
    say = lambda line: print(line, flush=True)  # noqa: E731
    ready = prepare(work, args.rows)
    start_mb = used_mb()
    results = []

    def run(job: CliJob) -> dict:
        row = job.run(len(results))
        results.append(row)
        say(
            f"job {row['job']:3d} {row['command']:9s} exit {row['exit']}, {row['seconds']:6.1f} s, processes seen {row['processes_seen']:2d}, "
            f"left {len(row['leftover_processes'])}, reaped {len(row['reaped'])}, lock/tmp files {len(row['leftover_files'])}, "
            f"used memory {row['used_mb']} MB ({row['used_mb_change']:+d})"
        )
        if row["exit"] != 0:
            say(f"    failed: see {logs}")
        return row

    first = run(
        CliJob(
            "train",
            ["train", "--config", str(ready["config"]), "--set", "tracking.run_name=soak-model", "--json"],
            work / "ray_results" / "soak-model",
            env,
            logs,
        )
    )
    if first["exit"] != 0:
        say(json.dumps({"jobs": 1, "failed_jobs": 1, "error": "the first training job failed"}))
        return 1
    model = json_tail(logs / "000-train.out")["model_uri"]
    plan = schedule(embed_jobs, jobs, 1 if args.quick else 2, work, ready["data"], ready["config"])
    for name, job_argv, out in plan:
        run(CliJob(name, [model if a == "{model}" else a for a in job_argv], out, env, logs))
    inproc = in_process_jobs(rounds, work, model, ready["data"], say)
    first_round, last_round = inproc["rounds"][0], inproc["rounds"][-1]
    summary = {
        "jobs": len(results) + 4 * rounds,
        "cli_jobs": {
            name: sum(1 for r in results if r["command"] == name) for name in sorted({r["command"] for r in results})
        },
        "in_process_rounds": rounds,
        "failed_jobs": sum(1 for r in results if r["exit"] != 0),
        "leftover_processes": sum(len(r["leftover_processes"]) for r in results) + inproc["leftover_processes"],
        "reaped_processes": sum(len(r["reaped"]) for r in results),
        "leftover_files": sum(len(r["leftover_files"]) for r in results)
        + sum(len(r["leftover_files"]) for r in inproc["rounds"]),
        "leftover_fds": last_round["fds"] - first_round["fds"],
        "leftover_threads": last_round["threads"] - first_round["threads"],
        "non_daemon_threads": last_round["non_daemon_threads"],
        "leftover_mb": round(used_mb() - start_mb),
        "max_rss_growth_mb": max(r["rss_mb"] for r in inproc["rounds"]) - first_round["rss_mb"],
        "seconds": round(sum(r["seconds"] for r in results), 1),
        "workdir": str(work) if args.workdir else None,
    }
    bad = (
        summary["failed_jobs"]
        or summary["leftover_processes"]
        or summary["leftover_files"]
        or summary["leftover_fds"] > 0
    )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    say(json.dumps(summary))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
