"""The command-line jobs of a soak: each ``deepsets`` command in its own process, its processes
polled while it runs and counted after it exits; and their order."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import psutil

from benchmarks.soak.accounting import (
    ORPHAN_DUMP_S,
    POLL_S,
    REAPED_PREFIX,
    SETTLE_S,
    dump_stacks,
    leftover_files,
    used_mb,
)
from deepsets.pipelines.ray_processes import (
    ProcessRecord,
    end_leftovers,
    logged_worker_pids,
    records_since,
    session_dirs_of,
    with_descendants,
)


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
