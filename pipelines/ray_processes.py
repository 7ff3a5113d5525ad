"""The processes of a job's own local Ray: counting them, and ending those left behind.

A job that starts a private local Ray (:func:`deepsets.pipelines.ray_runtime.start_ray` with no
cluster to join) owns that Ray session: the processes the driver started for it (GCS server,
raylet, monitors) and everything below them (the workers and actors the raylet starts, and
their children). When the job ends, :func:`private_ray` shuts the session down and waits a short
grace period; any of those processes still alive then is ended by its pid and named in a
``warning:`` line. A Ray Data actor was once seen to outlive its job that way for 43 minutes,
hung in its own teardown after its core worker had shut down, re-parented to init.

Processes are told apart by pid *and* start time (a pid the kernel reused belongs to someone
else), and found only from the session's own root pids, never by name: the processes of a
cluster the job merely joined (``--ray-address``), of a Ray the caller started, or of another
job's session are never touched.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence

import psutil

GRACE_S = 10.0
"""How long a job's Ray processes get to exit after Ray's shutdown before they are ended."""

KILL_WAIT_S = 3.0
"""How long an ended process gets between SIGTERM and SIGKILL."""


@dataclass(frozen=True)
class ProcessRecord:
    """One process, as seen while it ran.

    Args:
        pid: its process id.
        started: its start time (``psutil.Process.create_time``): a later process that reuses
            the pid has another, so it is never mistaken for this one.
        command: its command line (for reports; Ray names actors ``ray::Class``).
    """

    pid: int
    started: float
    command: str

    @classmethod
    def of(cls, process: psutil.Process) -> Optional["ProcessRecord"]:
        """The record of a running process, or None when it is already gone."""
        try:
            with process.oneshot():
                return cls(
                    process.pid, process.create_time(), " ".join(" ".join(process.cmdline()).split()) or process.name()
                )
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def running(self) -> Optional[psutil.Process]:
        """The process if this very one still runs (not a zombie, not a reused pid), else None."""
        try:
            process = psutil.Process(self.pid)
            if process.create_time() != self.started or process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None


def with_descendants(roots: Sequence[int]) -> List[ProcessRecord]:
    """``roots`` and every process below them that runs now, each once.

    Args:
        roots: process ids (gone ones are skipped).
    """
    found: dict = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for process in family:
            record = ProcessRecord.of(process)
            if record is not None:
                found.setdefault(record.pid, record)
    return list(found.values())


def session_root_pids() -> List[int]:
    """Pids of the processes this driver started for its local Ray node (GCS server, raylet,
    monitors); empty when this process started no Ray node (it joined a cluster, or none runs)."""
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    if node is None or not getattr(node, "head", False):
        return []
    return [info.process.pid for infos in node.all_processes.values() for info in infos if info.process is not None]


WORKER_LOG = re.compile(r"^python-core-worker-[0-9a-f]+_(\d+)\.log$")
"""A Ray worker's core-worker log in its session's ``logs/`` folder; the number is its pid."""


def logged_worker_pids(session_dir: str) -> List[int]:
    """Pids of every worker process a Ray session started, from its core-worker log files
    (one per worker, kept after the worker ends)."""
    try:
        names = os.listdir(os.path.join(session_dir, "logs"))
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(WORKER_LOG.match, names) if m)


def session_dirs_of(driver_pid: int, temp_dir: Optional[str] = None) -> List[str]:
    """The session folders of the local Rays that process ``driver_pid`` started (Ray names a
    session folder after its start time and the pid of the driver that started it).

    Args:
        driver_pid: the pid of the process that called ``ray.init``.
        temp_dir: Ray's temporary folder (default: ``$RAY_TMPDIR`` or the system's, plus ``ray``).
    """
    root = temp_dir or os.path.join(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir(), "ray")
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted(
        os.path.join(root, n) for n in names if n.startswith("session_2") and n.rsplit("_", 1)[-1] == str(driver_pid)
    )


def records_since(pids: Sequence[int], since: float) -> List[ProcessRecord]:
    """The running processes among ``pids`` that started at ``since`` (a Unix time) or later:
    a pid from a log of a session that began then, not an older process that has it now."""
    found = []
    for pid in pids:
        try:
            record = ProcessRecord.of(psutil.Process(pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if record is not None and record.started >= since - 1.0:  # create_time is rounded to clock ticks
            found.append(record)
    return found


def session_processes() -> List[ProcessRecord]:
    """Every process of the local Ray session this driver started, running now: the node's own
    processes and everything below them, and any worker its logs name that has left that tree."""
    roots = session_root_pids()
    found = {r.pid: r for r in with_descendants(roots)}
    if roots:
        from ray._private import worker

        started = min((r.started for r in found.values()), default=time.time())
        for record in records_since(logged_worker_pids(worker._global_node.get_session_dir_path()), started):
            found.setdefault(record.pid, record)
    return list(found.values())


def warn(message: str) -> None:
    """One ``warning:`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def end_leftovers(
    records: Sequence[ProcessRecord], grace_s: float = GRACE_S, report: Callable[[str], None] = warn
) -> List[ProcessRecord]:
    """Wait up to ``grace_s`` for ``records`` to exit; end each one still running by its pid
    (SIGTERM, then SIGKILL after :data:`KILL_WAIT_S`) and report it.

    Args:
        records: the processes that should exit (found while they ran).
        grace_s: seconds they get to exit on their own.
        report: called with one line per process ended.

    Returns:
        The processes that had to be ended.
    """
    deadline = time.monotonic() + grace_s
    running = [r for r in records if r.running() is not None]
    while running and time.monotonic() < deadline:
        time.sleep(0.1)
        running = [r for r in running if r.running() is not None]
    ended = []
    for record in running:
        process = record.running()
        if process is None:
            continue
        try:
            process.terminate()
            process.wait(KILL_WAIT_S)
        except psutil.TimeoutExpired:
            try:
                process.kill()
                process.wait(KILL_WAIT_S)
            except (psutil.NoSuchProcess, psutil.TimeoutExpired):
                pass
        except psutil.NoSuchProcess:
            pass
        ended.append(record)
        report(
            f"process {record.pid} of this job's local Ray ({record.command[:200]}) was still running "
            f"{grace_s:g} s after the job ended: ended it"
        )
    return ended


def end_private_ray(grace_s: float = GRACE_S, report: Callable[[str], None] = warn) -> List[ProcessRecord]:
    """Shut down the local Ray this driver started and end whatever of it outlives the grace period.

    Args:
        grace_s: seconds the session's processes get to exit after ``ray.shutdown()``.
        report: called with one line per process ended.

    Returns:
        The processes that had to be ended (empty when everything exited by itself).
    """
    import ray

    records = session_processes()  # before the shutdown: a hung worker is re-parented to init after it
    ray.shutdown()
    return end_leftovers(records, grace_s, report)


@contextmanager
def private_ray(address: Optional[str], num_cpus: int, grace_s: float = GRACE_S) -> Iterator[bool]:
    """Ray for one job: join ``address`` / ``RAY_ADDRESS`` or start a local Ray with ``num_cpus``
    CPUs; a local Ray started here is shut down as the block ends (however it ends) and its
    leftover processes ended (:func:`end_private_ray`). A Ray already running in this process
    (a notebook's, a test session's) and a joined cluster are left as they are.

    Args:
        address: a Ray cluster address, or None.
        num_cpus: CPUs of a local Ray.
        grace_s: seconds the session's processes get to exit after the shutdown.

    Yields:
        True when the block runs on a local Ray started for it.
    """
    from deepsets.pipelines.ray_runtime import start_ray

    started = start_ray(address, num_cpus)
    try:
        yield started
    finally:
        if started:
            end_private_ray(grace_s)


def open_fds() -> int:
    """Open file descriptors of this process."""
    try:
        return len(os.listdir(f"/proc/{os.getpid()}/fd"))
    except OSError:  # no /proc (macOS)
        return psutil.Process().num_fds()
