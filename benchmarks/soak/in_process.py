"""The in-process rounds of a soak: ``embed`` (1 and 2 workers), ``retrieve`` and ``ablate``
through the Python API, again and again in this one process, as a long-lived service calls them.

The rounds run under one local Ray started before the first (the jobs join a Ray already
initialized in their process and leave it running), because Ray itself keeps one socket open per
``ray.init`` / ``ray.shutdown`` cycle of a process (a connection to the ended session's GCS;
Ray 2.60, measured first by :func:`ray_start_fds`: bare cycles, no deepsets code). A job that
starts its own Ray, as each command-line job does, ends its process with it, so that socket dies
there. A process that calls the API many times starts Ray once (README, "From Python").

After each round it counts the driver's open fds, threads and resident memory, and the processes
of the session that belong to no job: an actor (``ray::<name>``) still running after its job, other
than the session's own actors, which Ray Data starts once and keeps (its stats actor), named in the
summary. Idle workers (``ray::IDLE``) and Ray's own processes are the session's.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import psutil

from benchmarks.soak.accounting import SETTLE_S, leftover_files
from deepsets.pipelines.ablation.config import parse_ablate_config
from deepsets.pipelines.ablation.job import run_ablate
from deepsets.pipelines.embedding.job import parse_embed_config, run_embed
from deepsets.pipelines.ray_processes import (
    GRACE_S,
    ProcessRecord,
    end_leftovers,
    end_private_ray,
    open_fds,
    with_descendants,
)
from deepsets.pipelines.ray_runtime import start_ray
from deepsets.pipelines.retrieval.job import parse_retrieve_config, run_retrieve

IDLE_WORKER = "ray::IDLE"
ACTOR_EXIT_S = GRACE_S
"""How long a job's actors get to exit after the job returns before they count as left behind
(the grace a job's own Ray gets after its shutdown): Ray Data ends its pool's actors by dropping
their handles, and on a loaded machine they take seconds."""


def ray_start_fds(cycles: int = 3) -> Dict[str, int]:
    """Ray's own fd growth: ``cycles`` bare local Ray starts and shutdowns in this process.

    Returns:
        ``{"cycles", "fds_before", "fds_after"}``.
    """
    before = open_fds()
    for _ in range(cycles):
        start_ray(None, 2)
        end_private_ray(report=lambda line: None)
        gc.collect()
    return {"cycles": cycles, "fds_before": before, "fds_after": open_fds()}


def actor_processes() -> Dict[int, ProcessRecord]:
    """The actor processes below this process (``ray::<name>``, idle workers excluded)."""
    found = {}
    for record in with_descendants([os.getpid()]):
        name = record.command.split(" ", 1)[0]
        if record.pid != os.getpid() and name.startswith("ray::") and name != IDLE_WORKER:
            found[record.pid] = record
    return found


def one_round(work: Path, model: str, data: Path) -> None:
    """``embed`` with 1 then 2 workers, ``retrieve`` of its rows among the command-line embed
    job's, ``ablate`` (leave-one-out), each through the Python API."""
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


def in_process_jobs(
    count: int, work: Path, model: str, data: Path, say: Callable[[str], None], ray_cycles: int = 3
) -> dict:
    """``count`` rounds of :func:`one_round` under one Ray; the driver's fds, threads and resident
    memory after each, compared with after the first (which loads the libraries and starts each
    kind of job once).

    Args:
        ray_cycles: bare Ray starts and shutdowns measured first (:func:`ray_start_fds`).

    Returns:
        ``{"rounds": [...], "leftover_processes", "session_actors", "ray_start_fds"}``.
    """
    ray_own = ray_start_fds(ray_cycles)
    say(
        f"Ray alone, {ray_own['cycles']} local starts and shutdowns in one process: fds {ray_own['fds_before']} -> "
        f"{ray_own['fds_after']} (its own; the rounds below share one Ray)"
    )
    me = psutil.Process()
    rows: List[dict] = []
    leftover: List[ProcessRecord] = []
    session_actors: Dict[int, ProcessRecord] = {}
    start_ray(None, 2)
    try:
        for i in range(count):
            one_round(work, model, data)
            time.sleep(SETTLE_S)
            if i == 0:  # the session's own (Ray Data's stats actor, Ray's agents): alive as long as the session
                session_actors = {pid: r for pid, r in actor_processes().items() if "MapWorker" not in r.command}
            job_actors = [r for pid, r in actor_processes().items() if pid not in session_actors]
            # those still running after the grace are this round's leftovers, ended by pid
            left = end_leftovers(job_actors, grace_s=ACTOR_EXIT_S, report=lambda line: None)
            leftover += left
            rows.append(_round_row(i, me, left, work))
            _say_round(rows, say)
    finally:
        end_private_ray(report=say)
    return {
        "rounds": rows,
        "leftover_processes": len(leftover),
        "session_actors": sorted(r.command.split(" ", 1)[0] for r in session_actors.values()),
        "ray_start_fds": ray_own,
    }


def _round_row(index: int, me: psutil.Process, left: List[ProcessRecord], work: Path) -> dict:
    return {
        "round": index,
        "fds": open_fds(),
        "threads": me.num_threads(),
        "python_threads": threading.active_count(),
        "non_daemon_threads": sorted(
            t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()
        ),
        "rss_mb": round(me.memory_info().rss / 2**20),
        "leftover_processes": [{"pid": r.pid, "command": r.command[:120]} for r in left],
        "leftover_files": leftover_files(work / "inproc_embed")
        + leftover_files(work / "inproc_top")
        + leftover_files(work / "inproc_ablation"),
    }


def _say_round(rows: List[dict], say: Callable[[str], None]) -> None:
    row, first = rows[-1], rows[0]
    say(
        f"in-process round {row['round']} (embed with 1 and 2 workers, retrieve, ablate): "
        f"fds {row['fds']} ({row['fds'] - first['fds']:+d}), threads {row['threads']} ({row['threads'] - first['threads']:+d}), "
        f"rss {row['rss_mb']} MB ({row['rss_mb'] - first['rss_mb']:+d}), left {len(row['leftover_processes'])} process(es), "
        f"{len(row['leftover_files'])} lock/tmp file(s)"
    )
    for left in row["leftover_processes"]:
        say(f"    left: pid {left['pid']} {left['command']}")
