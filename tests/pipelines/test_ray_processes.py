"""Ending what a job's own local Ray leaves behind, by pid and only that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from deepsets.pipelines.ray_processes import (
    ProcessRecord,
    end_leftovers,
    logged_worker_pids,
    records_since,
    session_dirs_of,
    with_descendants,
)

SLEEPER = "import time; time.sleep(600)"
DEAF_SLEEPER = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"
)
"""Like a worker hung in its teardown: SIGTERM does nothing."""


@pytest.fixture
def spawn():
    started = []

    def start(code: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        started.append(process)
        return process

    yield start
    for process in started:  # only the processes this test started
        if process.poll() is None:
            process.kill()
        process.wait()


def _record(process: subprocess.Popen) -> ProcessRecord:
    record = ProcessRecord.of(psutil.Process(process.pid))
    assert record is not None
    return record


def test_a_planted_leftover_is_ended_by_pid_and_reported_and_others_are_left_alone(spawn):
    leftover, bystander = spawn(SLEEPER), spawn(SLEEPER)
    lines = []

    ended = end_leftovers([_record(leftover)], grace_s=0.3, report=lines.append)

    assert [r.pid for r in ended] == [leftover.pid]
    assert leftover.wait(5) is not None
    assert bystander.poll() is None  # not in the records: untouched
    assert len(lines) == 1 and f"process {leftover.pid} " in lines[0] and "time.sleep(600)" in lines[0]


def test_a_process_that_ignores_sigterm_is_killed(spawn):
    deaf = spawn(DEAF_SLEEPER)
    assert deaf.stdout.readline().strip() == "ready"  # its handler is in place

    record = _record(deaf)
    ended = end_leftovers([record], grace_s=0.1, report=lambda line: None)

    assert [r.pid for r in ended] == [deaf.pid]
    assert record.running() is None  # gone, though it ignores SIGTERM: SIGKILL followed


def test_processes_that_exit_within_the_grace_period_are_not_reported(spawn):
    quick = spawn("import time; time.sleep(0.3)")
    lines = []

    assert end_leftovers([_record(quick)], grace_s=10, report=lines.append) == []
    assert lines == []


def test_a_reused_pid_is_not_taken_for_the_recorded_process(spawn):
    other = spawn(SLEEPER)
    record = _record(other)
    stale = ProcessRecord(record.pid, record.started - 100.0, record.command)  # the same pid, an older process

    assert stale.running() is None
    assert end_leftovers([stale], grace_s=0.1, report=lambda line: None) == []
    assert other.poll() is None


def test_descendants_are_found_below_a_root_and_only_there(spawn):
    parent = spawn(
        "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print(c.pid, flush=True); time.sleep(600)"
    )
    bystander = spawn(SLEEPER)
    child_pid = int(parent.stdout.readline())

    found = {r.pid for r in with_descendants([parent.pid])}

    assert found == {parent.pid, child_pid}
    assert bystander.pid not in found
    psutil.Process(child_pid).kill()


def test_worker_pids_are_read_from_a_session_folder_of_this_driver(tmp_path, spawn):
    mine, theirs = (
        tmp_path / "session_2026-01-01_00-00-00_000001_4242",
        tmp_path / "session_2026-01-01_00-00-00_000001_4343",
    )
    worker = spawn(SLEEPER)
    for session in (mine, theirs):
        (session / "logs").mkdir(parents=True)
    (mine / "logs" / f"python-core-worker-0a1b_{worker.pid}.log").write_text("")
    (mine / "logs" / "python-core-driver-01000000ff_4242.log").write_text("")  # the driver: not a worker
    (mine / "logs" / "raylet.out").write_text("")

    assert session_dirs_of(4242, str(tmp_path)) == [str(mine)]
    assert logged_worker_pids(str(mine)) == [worker.pid]
    started = _record(worker).started
    assert [r.pid for r in records_since([worker.pid], started)] == [worker.pid]
    assert records_since([worker.pid], started + 60.0) == []  # a process older than the session is not its worker


def test_a_ray_already_running_in_the_process_is_left_running(ray_session):
    import ray

    from deepsets.pipelines.ray_processes import private_ray

    with private_ray(None, 2) as started:
        assert started is False
    assert ray.is_initialized()


LEFTOVER_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys, time
    import ray
    from deepsets.pipelines.ray_processes import private_ray

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # the driver's own child, not Ray's
    lines = []
    with private_ray(None, 2) as started:
        @ray.remote
        class Planter:
            def plant(self):
                # a thread that never ends and is not a daemon: the actor's process cannot finish
                # its teardown once Ray stops it, as a hung actor outlived its raylet
                import threading
                threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
                return os.getpid()
        planted = ray.get(Planter.remote().plant.remote())
        raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    alive = lambda pid: os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    print(json.dumps({"started": started, "planted": planted, "planted_alive": alive(planted), "raylet_alive": alive(raylet),
                      "bystander_alive": bystander.poll() is None, "bystander": bystander.pid}))
    bystander.kill()
""")


@pytest.mark.slow
def test_a_job_ends_a_leftover_process_of_its_own_ray_and_names_it(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    done = subprocess.run(
        [sys.executable, "-c", LEFTOVER_SCRIPT], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["started"] is True
    assert not result["planted_alive"] and not result["raylet_alive"]
    assert result["bystander_alive"]  # the driver's other child is not the session's
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: process ")]
    assert [w.split()[2] for w in warnings] == [str(result["planted"])], done.stderr[-3000:]
    assert "(ray::Planter)" in warnings[0]
