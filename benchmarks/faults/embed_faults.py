"""Faults of the batch embedding job: a job killed at its driver or at a worker and resumed, a
part truncated, two jobs on one output; and the audit of an output against an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pyarrow.parquet as pq

from benchmarks.faults.processes import JOB_TIMEOUT_S, finish, kill_job, session_processes, start

MODEL_CONFIG = {"dim": 16, "layers": 1, "heads": 2, "ff_dim": 32, "fusion": "transformer", "fusion_layers": 1}
FRAGMENT_ROWS = 60


def save_untrained_model(directory: Path, data: Path, seed: int = 0) -> Path:
    """A seeded untrained model over ``data``'s schema, saved as a training checkpoint."""
    import torch

    from deepsets.builders import build_model
    from deepsets.features.schema import load_schema
    from deepsets.features.spec import FeatureSpec
    from deepsets.model_args import ModelArgs
    from deepsets.pipelines.models.checkpoint import TrainState, save_checkpoint

    spec = FeatureSpec.fit(load_schema(data / "schema.toml"), data / "train", validate=False)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    args = ModelArgs(**MODEL_CONFIG)
    model = build_model(spec.model_inputs(), args).eval()
    save_checkpoint(directory, TrainState(model.state_dict(), {}, {}, 1, 0), spec, {}, args)
    return directory


def embed_command(model: Path, inputs: Path, out: Path, *flags: str) -> List[str]:
    return [
        sys.executable,
        "-m",
        "deepsets.pipelines.cli",
        "embed",
        "--model",
        str(model),
        "--input",
        str(inputs),
        "--output",
        str(out),
        "--fragment-rows",
        str(FRAGMENT_ROWS),
        "--batch-size",
        "32",
        "--workers",
        "2",
        "--json",
        *flags,
    ]


def parts_written(out: Path) -> int:
    folder = out / "embeddings"
    return len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0


def wait_for_parts(job: subprocess.Popen, out: Path, at_least: int) -> bool:
    """True once ``out`` holds ``at_least`` parts while ``job`` still runs."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline and job.poll() is None:
        if parts_written(out) >= at_least:
            return True
        time.sleep(0.01)
    return False


def audit(out: Path, reference: Path, id_column: str) -> dict:
    """``out`` against the uninterrupted run in ``reference``: ids lost or repeated, parts of
    another model than the manifest's, and the largest vector difference."""
    from deepsets.pipelines.embedding.layout import FINGERPRINT_KEY

    manifest = json.loads((out / "_manifest.json").read_text())
    parts = sorted((out / "embeddings").glob("part-*.parquet"))
    mixed = sum(
        (pq.read_metadata(p).metadata or {}).get(FINGERPRINT_KEY, b"").decode() != manifest["weights_sha256"]
        for p in parts
    )
    got = pq.read_table(out / "embeddings").sort_by(id_column)
    want = pq.read_table(reference / "embeddings").sort_by(id_column)
    got_ids, want_ids = got[id_column].to_numpy(), want[id_column].to_numpy()
    lost = len(set(want_ids.tolist()) - set(got_ids.tolist()))
    duplicates = len(got_ids) - len(np.unique(got_ids))
    same_rows = lost == 0 and duplicates == 0 and np.array_equal(got_ids, want_ids)
    diff = (
        float(
            np.abs(
                np.stack(got["embedding"].to_numpy(zero_copy_only=False))
                - np.stack(want["embedding"].to_numpy(zero_copy_only=False))
            ).max()
        )
        if same_rows
        else float("inf")
    )
    return {"rows_lost": lost, "duplicate_rows": int(duplicates), "mixed_model_parts": int(mixed), "max_abs_diff": diff}


def killed_embed_job(
    model: Path,
    inputs: Path,
    out: Path,
    kills: int,
    rng: random.Random,
    logs: Path,
    kinds: Optional[Sequence[str]] = None,
) -> dict:
    """One job over ``inputs`` killed ``kills`` times at random points, resumed after each
    driver kill, then run to the end. ``kinds[k]`` ("driver" or "worker") says what the k-th
    kill hits (default: a coin flip); a worker kill with no worker up hits the driver."""
    total = sum(pq.read_metadata(p).num_rows for p in inputs.glob("*.parquet"))
    fragments_estimate = max(4, total // FRAGMENT_ROWS)
    done = {"driver": 0, "worker": 0}
    log = logs / "embed-0.log"
    job = start(embed_command(model, inputs, out), log)
    for k in range(kills):
        target = min(
            fragments_estimate - 1, parts_written(out) + rng.randint(1, max(1, fragments_estimate // (kills + 1)))
        )
        if not wait_for_parts(job, out, target):
            break  # the job finished first: no more kill points
        kind = kinds[k] if kinds else rng.choice(("driver", "worker"))
        workers = session_processes(job.pid, "FragmentEmbedder") if kind == "worker" else []
        if kind == "worker" and workers:
            os.kill(rng.choice(workers), signal.SIGKILL)
        else:
            kind = "driver"
            kill_job(job)
            log = logs / f"embed-{k + 1}.log"
            job = start(embed_command(model, inputs, out, "--resume"), log)
        done[kind] += 1
    summary = finish(job, log)
    return {"driver_kills": done["driver"], "worker_kills": done["worker"], "summary": summary}


def truncate_random_part(out: Path, rng: random.Random) -> str:
    """Cut a random part of ``out`` to half its bytes (what a crash before fsync can leave)."""
    victim = rng.choice(sorted((out / "embeddings").glob("part-*.parquet")))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    return victim.name


def truncated_part(model: Path, inputs: Path, out: Path, rng: random.Random, logs: Path) -> dict:
    """A part of a finished job truncated; ``--resume`` must find and redo it."""
    victim = truncate_random_part(out, rng)
    log = logs / "truncated.log"
    summary = finish(start(embed_command(model, inputs, out, "--resume"), log), log)
    return {"truncated": victim, "redone": [r["part"] for r in summary.get("parts_redone", [])]}


def concurrent_jobs(model: Path, inputs: Path, out: Path, logs: Path) -> dict:
    """Two jobs started at once on one output: exactly one may run."""
    jobs = [start(embed_command(model, inputs, out), logs / f"concurrent-{i}.log") for i in range(2)]
    codes = [job.wait(timeout=JOB_TIMEOUT_S) for job in jobs]
    refused = [
        i
        for i, code in enumerate(codes)
        if code == 2 and "in use by another embed job" in (logs / f"concurrent-{i}.log").read_text()
    ]
    return {"exit_codes": codes, "refused": len(refused), "finished": codes.count(0)}
