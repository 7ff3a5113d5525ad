"""The soak's command line: the command-line jobs, then the in-process rounds, then one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional

from benchmarks.soak.accounting import used_mb
from benchmarks.soak.cli_jobs import CliJob, json_tail, schedule
from benchmarks.soak.in_process import in_process_jobs
from benchmarks.soak.workload import prepare

DESCRIPTION = (
    "Jobs of every command back to back (embed with 1 and 2 workers, train, ablate, retrieve, tune), "
    "each counted for what it leaves behind: processes, lock and temporary files, the driver's fds, "
    "threads and memory. One line per job; the last line is one JSON object."
)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=DESCRIPTION)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few jobs of each command (CI): 2 embed jobs, 1 of each other (tune: 1 trial), 1 bare Ray cycle, 2 in-process rounds",
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
    inproc = in_process_jobs(rounds, work, model, ready["data"], say, ray_cycles=1 if args.quick else 3)
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
        "session_actors": inproc["session_actors"],
        "ray_start_fds": inproc["ray_start_fds"],
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
