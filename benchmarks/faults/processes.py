"""Running a job as a user runs it, in its own process group, and killing all of it at once.

job = start(command, log)          # its own session: its private Ray and workers stay in it
session_processes(job.pid, "FragmentEmbedder")   # pids of that session by command line
kill_job(job)                      # SIGKILL to every process of the session (a power cut)
summary = finish(job, log)         # its --json summary, or RuntimeError with the log's end
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import List

JOB_TIMEOUT_S = 300


def start(command: List[str], log: Path) -> subprocess.Popen:
    """``command`` in a new process group (so a kill reaches its Ray too), output to ``log``."""
    handle = open(log, "ab")
    return subprocess.Popen(
        command,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )


def finish(job: subprocess.Popen, log: Path) -> dict:
    """Wait for ``job``; its ``--json`` summary, or RuntimeError with the log's end."""
    if job.wait(timeout=JOB_TIMEOUT_S) != 0:
        raise RuntimeError(f"{' '.join(job.args[2:5])} exited {job.returncode}: {log.read_text()[-2000:]}")
    return json.loads(log.read_text().strip().splitlines()[-1])


def session_processes(sid: int, marker: str = "") -> List[int]:
    """Pids of session ``sid`` whose command line holds ``marker``. A job started by
    :func:`start` leads its session; its private Ray and the Ray workers stay in it (each
    worker in a process group of its own), named ``ray::<class>`` on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == sid and marker in (entry / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return found


def kill_job(job: subprocess.Popen) -> None:
    """SIGKILL to every process of the job's session at once (a power cut), then reap it."""
    for pid in session_processes(job.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    job.wait()
