"""What a soak job can leave behind, and how it is counted: lock and temporary files, the
machine's memory, stack dumps of processes that should have ended."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import psutil

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
