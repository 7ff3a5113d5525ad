"""The embed job's folder lock: on local disk a kernel lock (flock) held for the job's life, so
of two takers exactly one gets the folder, a killed holder frees it at once, and the file names
the holder for the refusal; on object storage the holder is compared by host and pid."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest

from deepsets.features import storage
from deepsets.pipelines.embedding.layout import LOCK
from deepsets.pipelines.embedding.output import OutputLock
from deepsets.pipelines.errors import JobError

HOLD_THE_LOCK = textwrap.dedent("""
    import sys
    from deepsets.pipelines.embedding.output import OutputLock

    with OutputLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()  # holds the lock until killed or its stdin closes
""")


def test_a_second_taker_is_refused_naming_the_holder_and_the_folder_is_free_after_it(tmp_path):
    out = str(tmp_path / "out")
    with OutputLock(out) as first:  # the second below opens the file anew: another open file description
        holder = json.loads((tmp_path / "out" / LOCK).read_text())
        assert holder == first.me and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(JobError) as refused:
            OutputLock(out).__enter__()
        assert str(refused.value) == (
            f"{out} is in use by another embed job (pid {os.getpid()} on {socket.gethostname()}, "
            f"started {first.me['started']}): wait for it to finish"
        )
    assert not (tmp_path / "out" / LOCK).exists()
    with OutputLock(out) as again:
        assert again.took_over is None


def test_a_lock_held_by_another_process_is_refused_and_free_the_moment_that_process_is_killed(tmp_path):
    out = str(tmp_path / "out")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, out], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(
            JobError, match=rf"in use by another embed job \(pid {holder.pid} on {socket.gethostname()}, started "
        ):
            OutputLock(out).__enter__()
        holder.kill()  # SIGKILL: no __exit__ runs, the lock file stays behind
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert json.loads((tmp_path / "out" / LOCK).read_text())["pid"] == holder.pid
    with OutputLock(out) as lock:  # the kernel dropped the dead process's lock
        assert lock.took_over["pid"] == holder.pid
        assert json.loads((tmp_path / "out" / LOCK).read_text())["pid"] == os.getpid()


def test_a_left_lock_file_naming_a_live_process_is_taken_over_when_nobody_holds_the_lock(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # a job that died; its pid now belongs to another process of this host (here: this one)
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "yesterday"}))
    with OutputLock(str(out)) as lock:
        assert lock.took_over["started"] == "yesterday"


def test_two_takers_of_a_stale_lock_file_at_once_let_exactly_one_in(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text(
        json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345, "started": "then"})
    )  # its job is gone
    read_holder = OutputLock._holder
    second, outcome = OutputLock(str(out)), {}

    def second_taker_runs_right_after_the_first_read(lock):
        found = read_holder(lock)  # the first taker has read the stale holder ...
        if lock is not second and not outcome:
            try:  # ... and the second taker runs whole before the first goes on
                outcome["second"] = second.__enter__()
            except JobError as refused:
                outcome["second"] = refused
        return found

    monkeypatch.setattr(OutputLock, "_holder", second_taker_runs_right_after_the_first_read)
    try:
        first = OutputLock(str(out)).__enter__()
    except JobError as refused:
        first = refused
    monkeypatch.undo()
    taken = [lock for lock in (first, outcome["second"]) if isinstance(lock, OutputLock)]
    assert len(taken) == 1
    refused = first if isinstance(first, JobError) else outcome["second"]
    assert str(refused) == f"{out} is in use by another embed job (a job that is just starting): wait for it to finish"
    assert json.loads((out / LOCK).read_text()) == taken[0].me
    taken[0].__exit__(None, None, None)
    assert not (out / LOCK).exists()


def test_on_object_storage_a_job_releases_only_a_lock_naming_its_own_host_and_pid(s3_server):
    out = f"s3://deepsets/embed-{uuid.uuid4().hex[:8]}"
    lock = OutputLock(out).__enter__()
    other = {**lock.me, "host": f"not-{lock.me['host']}"}  # same pid, another machine: another job
    storage.write_text(storage.join(out, LOCK), json.dumps(other))
    lock.__exit__(None, None, None)
    assert json.loads(storage.read_text(storage.join(out, LOCK))) == other
