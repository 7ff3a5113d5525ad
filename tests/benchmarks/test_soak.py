"""benchmarks.soak: what it counts as left behind, the order of its jobs, and the quick soak itself."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import leftover_files, schedule

ROOT = Path(__file__).resolve().parents[2]


def test_leftover_files_are_locks_temporary_files_and_held_claims(tmp_path):
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "part-00000-00000.parquet").write_text("")
    (tmp_path / "embeddings" / ".part-00001-00000.parquet.tmp-4242").write_text("")
    (tmp_path / "_job.lock").write_text("")
    (tmp_path / "_SUCCESS.json").write_text("{}")
    free, held = tmp_path / "free" / "run.claim", tmp_path / "held" / "run.claim"
    for claim in (free, held):
        claim.parent.mkdir()
        claim.write_text("")
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        found = sorted(leftover_files(tmp_path))
    finally:
        os.close(fd)
    assert found == ["_job.lock", "embeddings/.part-00001-00000.parquet.tmp-4242", "held/run.claim"]
    assert leftover_files(tmp_path / "missing") == []


def test_schedule_starts_with_both_embed_worker_counts_and_spreads_the_other_commands(tmp_path):
    plan = schedule(10, 2, 2, tmp_path, tmp_path / "data", tmp_path / "run.toml")
    names = [name for name, _, _ in plan]
    assert names[:2] == ["embed-w1", "embed-w2"]
    # the training job that made the model is the first of the 2 training jobs
    assert {n: names.count(n) for n in set(names)} == {
        "embed-w1": 5,
        "embed-w2": 5,
        "train": 1,
        "ablate": 2,
        "retrieve": 2,
        "tune": 2,
    }
    others = [i for i, name in enumerate(names) if not name.startswith("embed")]
    assert max(b - a for a, b in zip(others, others[1:])) <= 3  # the 8 remaining embed jobs between the 7 others
    tune = next(argv for name, argv, _ in plan if name == "tune")
    assert tune[tune.index("--trials") + 1] == "2"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_quick_soak_leaves_nothing_behind(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--quick", "--workdir", str(tmp_path / "soak")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=2300,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["cli_jobs"] == {"embed-w1": 1, "embed-w2": 1, "train": 1, "ablate": 1, "retrieve": 1, "tune": 1}, (
        done.stdout[-4000:]
    )
    assert summary["failed_jobs"] == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert summary["leftover_processes"] == 0
    assert summary["leftover_files"] == 0
    # the in-process rounds share one Ray, as a long-lived service would: the driver's fds stay flat
    assert summary["leftover_fds"] == 0, done.stdout[-4000:]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
