"""One training run per run folder: a run claims ``storage_path/run_name`` before it writes
there, so a second run of that name fails at once; --resume keeps working on a claimed folder;
generated names differ within one second."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime

import pytest

from deepsets.features import storage
from deepsets.pipelines.config import TrackingConfig
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.training.claim import CLAIM, RunClaim

HOLD_A_CLAIM = textwrap.dedent("""
    import sys
    from deepsets.pipelines.training.claim import RunClaim

    RunClaim(sys.argv[1], "r1", "runs").take(resume=False)
    print("claimed", flush=True)
    sys.stdin.read()  # holds the claim until killed
""")


def write_checkpoint(run_dir, demo_spec) -> None:
    """A complete checkpoint of epoch 0, as Ray Train leaves it after the first epoch."""
    from deepsets.pipelines.demo import default_demo_config
    from deepsets.pipelines.models.checkpoint import TrainState, save_checkpoint

    cfg = default_demo_config("data", workers=1)
    (run_dir / "checkpoint_000000").mkdir(parents=True)
    save_checkpoint(
        run_dir / "checkpoint_000000", TrainState({}, {}, {}, 0, 10), demo_spec, cfg.as_dict(), cfg.model_args()
    )


def test_a_second_run_with_the_same_name_is_refused_at_once_naming_the_first(tmp_path):
    run_dir = str(tmp_path / "runs" / "r1")
    first = RunClaim(run_dir, "r1", "runs").take(resume=False)
    assert json.loads((tmp_path / "runs" / "r1" / CLAIM).read_text()) == first.me
    with pytest.raises(JobError) as refused:
        RunClaim(run_dir, "r1", "runs").take(resume=False)
    assert str(refused.value) == (
        f"run 'r1' in runs is running now (started {first.me['started']} by pid {os.getpid()} on "
        f"{socket.gethostname()}): choose another tracking.run_name"
    )
    with pytest.raises(JobError, match=r"run 'r1' in runs is running now \(.*\): wait for it to end before --resume"):
        RunClaim(run_dir, "r1", "runs").take(resume=True)
    first.release(keep=False)  # failed before its first checkpoint: the name is free again
    assert not (tmp_path / "runs" / "r1" / CLAIM).exists()
    RunClaim(run_dir, "r1", "runs").take(resume=False).release(keep=False)


def test_resume_continues_a_claimed_run_that_has_ended_and_a_new_run_of_its_name_is_refused(tmp_path, demo_spec):
    run_dir = tmp_path / "runs" / "r1"
    first = RunClaim(str(run_dir), "r1", "runs").take(resume=False)
    write_checkpoint(run_dir, demo_spec)
    first.release(keep=True)  # interrupted after a checkpoint (or finished): the folder stays the run's
    assert json.loads((run_dir / CLAIM).read_text())["pid"] == os.getpid()
    with pytest.raises(
        JobError,
        match=r"run 'r1' already exists in runs \(started .* by pid \d+ on .*\): pass --resume to continue it, "
        r"or choose another tracking.run_name$",
    ):
        RunClaim(str(run_dir), "r1", "runs").take(resume=False)
    resumed = RunClaim(str(run_dir), "r1", "runs").take(resume=True)
    assert json.loads((run_dir / CLAIM).read_text()) == resumed.me
    resumed.release(keep=False)  # a resume never gives the name back
    assert (run_dir / CLAIM).exists()
    RunClaim(str(run_dir), "r1", "runs").take(resume=True).release(keep=True)  # and can resume again


def test_a_run_killed_before_its_first_checkpoint_leaves_its_name_free_at_once(tmp_path):
    run_dir = str(tmp_path / "runs" / "r1")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_CLAIM, run_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "claimed\n"
        with pytest.raises(JobError, match=rf"is running now \(started .* by pid {holder.pid} on "):
            RunClaim(run_dir, "r1", "runs").take(resume=False)
        holder.kill()  # SIGKILL: its claim file stays, its lock goes with it
        holder.wait()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    taken = RunClaim(run_dir, "r1", "runs").take(resume=False)
    assert taken.took_over["pid"] == holder.pid
    taken.release(keep=False)


def test_a_second_run_with_the_same_name_fails_before_writing_anything(demo_data, tmp_path, monkeypatch):
    from deepsets.pipelines.demo import default_demo_config
    from deepsets.pipelines.training import run as training_run

    cfg = default_demo_config(demo_data, workers=1)
    cfg = cfg.model_copy(
        update={
            "tracking": cfg.tracking.model_copy(
                update={
                    "run_name": "same",
                    "storage_path": str(tmp_path / "runs"),
                    "mlflow_uri": f"sqlite:///{tmp_path}/mlflow.db",
                }
            )
        }
    )
    first = RunClaim(str(tmp_path / "runs" / "same"), "same", str(tmp_path / "runs")).take(
        resume=False
    )  # the first run, before its first checkpoint

    def second_run_went_on(*args, **kwargs):
        raise AssertionError("the second run went on to write its spec into the first run's folder")

    monkeypatch.setattr(training_run, "prepare_spec", second_run_went_on)
    with pytest.raises(JobError, match=rf"run 'same' in {re.escape(str(tmp_path / 'runs'))} is running now \(started "):
        training_run.run_training(cfg, progress=False)
    assert sorted(p.name for p in (tmp_path / "runs" / "same").iterdir()) == [CLAIM]
    first.release(keep=False)


def test_generated_run_names_differ_within_one_second():
    tracking = TrackingConfig()
    now = datetime(2025, 1, 2, 3, 4, 5)
    names = {tracking.resolved_run_name(now) for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(r"run-20250102-030405-[0-9a-f]{6}", name) for name in names)
    assert TrackingConfig(run_name="given").resolved_run_name(now) == "given"


def test_on_object_storage_a_second_run_is_refused_and_only_its_own_claim_is_given_back(s3_server):
    run_dir = f"s3://deepsets/runs-{uuid.uuid4().hex[:8]}/r1"
    first = RunClaim(run_dir, "r1", "s3://deepsets/runs").take(resume=False)
    with pytest.raises(
        JobError,
        match=rf"run 'r1' already exists in s3://deepsets/runs \(started .* by pid {os.getpid()} on .*\): pass "
        rf"--resume to continue it, or choose another tracking.run_name; if that run is gone and left no "
        rf"checkpoint, delete {run_dir}/{CLAIM}",
    ):
        RunClaim(run_dir, "r1", "s3://deepsets/runs").take(resume=False)
    other = {**first.me, "host": f"not-{first.me['host']}"}  # same pid, another machine: another run
    storage.write_text(storage.join(run_dir, CLAIM), json.dumps(other))
    first.release(keep=False)
    assert json.loads(storage.read_text(storage.join(run_dir, CLAIM))) == other
    storage.write_text(storage.join(run_dir, CLAIM), json.dumps(first.me))
    first.release(keep=False)
    assert not storage.exists(storage.join(run_dir, CLAIM))
