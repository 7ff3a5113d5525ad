"""Fault injection: the batch embedding and training jobs under kill -9, a second job on the
same output, a truncated part, a killed training worker and a diverging run.

    python -m benchmarks.faults.injection             # 10 kills over 6,000 rows, every fault kind
    python -m benchmarks.faults.injection --quick     # 4 kills over 3,000 rows

Every job runs as a user runs it, ``python -m deepsets.pipelines.cli ...`` in its own process group, and
is killed with SIGKILL: the *driver* (the CLI process, its private Ray and every worker: a
power cut) at a random point, or one *worker* (a Ray Data actor embedding a fragment). After a
driver kill the same command runs again with ``--resume``; after a worker kill the job goes on
by itself (Ray restarts the actor and retries its fragment). The output is then compared with
an uninterrupted run of the same model: every id exactly once, the same vectors to 1e-5, every
part carrying the manifest's model fingerprint. Then a part is truncated (half its bytes, as a
crash before fsync could leave it) and ``--resume`` must find and redo it; two jobs started at
once on one output: one must refuse. Training: one Ray Train worker killed mid-run with
``scaling.max_failures = 1`` must finish from its checkpoint; a run whose loss overflows must
exit non-zero, be FAILED in MLflow and log no model.

The last line printed is one JSON object: ``{"kills": N, "rows_lost": 0, "duplicate_rows": 0,
"mixed_model_parts": 0, "bad_parts_redone": K, ...}``.
"""

from __future__ import annotations

import argparse
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

MODEL_CONFIG = {"dim": 16, "layers": 1, "heads": 2, "ff_dim": 32, "fusion": "transformer", "fusion_layers": 1}
FRAGMENT_ROWS = 60
JOB_TIMEOUT_S = 300


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
    from deepsets.pipelines.embedding.worker import FINGERPRINT_KEY

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


def training_worker_killed(data: Path, work: Path, logs: Path, epochs: int = 4) -> dict:
    """``deepsets train`` with 2 workers and ``max_failures = 1``; one worker is killed once
    the first checkpoint exists. The run must finish every epoch from its checkpoint."""
    import mlflow

    from deepsets.pipelines.demo import default_demo_config

    work.mkdir(parents=True, exist_ok=True)
    cfg = default_demo_config(data, workers=2)
    config = work / "train.toml"
    config.write_text(cfg.to_toml())
    storage = work / "ray_results"
    command = [
        sys.executable,
        "-m",
        "deepsets.pipelines.cli",
        "train",
        "--config",
        str(config),
        "--json",
        "--set",
        f"training.epochs={epochs}",
        "--set",
        "training.batch_size=100",
        "--set",
        "scaling.max_failures=1",
        "--set",
        "tracking.run_name=killed-worker",
        "--set",
        f"tracking.storage_path={storage}",
        "--set",
        f"tracking.mlflow_uri=sqlite:///{work / 'mlflow.db'}",
    ]
    log = logs / "train-killed.log"
    job = start(command, log)
    deadline, killed = time.monotonic() + JOB_TIMEOUT_S, None
    while time.monotonic() < deadline and job.poll() is None and killed is None:
        if checkpoint_registered(storage / "killed-worker"):
            time.sleep(1.0)  # past rank 0's MLflow logging of that epoch: mid next epoch
            workers = session_processes(job.pid, "RayTrainWorker")
            if workers:
                killed = max(workers)
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    summary = finish(job, log)
    client = mlflow.tracking.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    resumed = [m.value for m in client.get_metric_history(summary["run_id"], "resumed_at_epoch")]
    return {
        "worker_killed": killed is not None,
        "epochs_done": summary["epochs_done"],
        "epochs": epochs,
        "resumed_at_epoch": resumed,
        "status": client.get_run(summary["run_id"]).info.status,
    }


def checkpoint_registered(run_dir: Path) -> bool:
    """Whether Ray Train has registered a checkpoint of the run (every rank reported the epoch);
    a worker killed before that restarts the run from its previous checkpoint, or from scratch."""
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    try:
        return bool(json.loads(snapshot.read_text()).get("checkpoint_results"))
    except (OSError, ValueError):
        return False


def overflowing_copy(data: Path, out: Path) -> Path:
    """``data`` (train, valid, schema) with a regression label ``huge`` of 1e30 in every row: a
    squared error on it overflows at the first step."""
    import pyarrow as pa

    for split in ("train", "valid"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for path in sorted((data / split).glob("*.parquet")):
            table = pq.read_table(path)
            pq.write_table(
                table.append_column("huge", pa.array(np.full(table.num_rows, 1e30, np.float32))),
                out / split / path.name,
            )
    (out / "schema.toml").write_text((data / "schema.toml").read_text())
    return out


def diverging_run(data: Path, work: Path, logs: Path) -> dict:
    """A regression run on a label of 1e30 (the loss overflows at once) through the CLI."""
    import mlflow

    from deepsets.pipelines.demo import default_demo_config

    huge = overflowing_copy(data, work / "huge")
    config = work / "diverging.toml"
    config.write_text(default_demo_config(huge, workers=1).to_toml())
    uri = f"sqlite:///{work / 'diverging.db'}"
    command = [
        sys.executable,
        "-m",
        "deepsets.pipelines.cli",
        "train",
        "--config",
        str(config),
        "--set",
        "task.kind=regression",
        "--set",
        "data.label_columns=['huge']",
        "--set",
        "training.epochs=1",
        "--set",
        "tracking.run_name=diverging",
        "--set",
        f"tracking.storage_path={work / 'ray_results'}",
        "--set",
        f"tracking.mlflow_uri={uri}",
    ]
    log = logs / "diverging.log"
    code = start(command, log).wait(timeout=JOB_TIMEOUT_S)
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(default_demo_config(huge).tracking.experiment).experiment_id]
    )
    return {
        "exit_code": code,
        "statuses": [r.info.status for r in runs],
        "logged_models": len(client.search_logged_models([runs[0].info.experiment_id])) if runs else 0,
        "error_line": next((line for line in log.read_text().splitlines() if line.startswith("error:")), ""),
    }


def sweep(work: Path, rows: int, kills: int, seed: int, training: bool = True, progress=print) -> dict:
    """Every fault kind once (kills: ``kills`` over one job); the figures for the JSON line."""
    from deepsets.pipelines.demo import make_demo_data

    rng = random.Random(seed)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    make_demo_data(data, rows=rows, seed=seed, progress=False)
    model = save_untrained_model(work / "model", data, seed=seed)
    inputs, id_column = data / "train", "item_id"
    reference = work / "reference"
    finish(start(embed_command(model, inputs, reference), logs / "reference.log"), logs / "reference.log")
    progress(f"reference run: {parts_written(reference)} parts")
    killed = killed_embed_job(model, inputs, work / "killed", kills, rng, logs)
    after_kills = audit(work / "killed", reference, id_column)
    progress(f"{killed['driver_kills']} driver and {killed['worker_kills']} worker kills, then --resume: {after_kills}")
    cut = truncated_part(model, inputs, work / "killed", rng, logs)
    after_cut = audit(work / "killed", reference, id_column)
    progress(f"truncated {cut['truncated']}, --resume redid {cut['redone']}: {after_cut}")
    both = concurrent_jobs(model, inputs, work / "concurrent", logs)
    progress(f"two jobs at once on one output: exit codes {both['exit_codes']}, {both['refused']} refused")
    found = {
        "kills": killed["driver_kills"] + killed["worker_kills"],
        "driver_kills": killed["driver_kills"],
        "worker_kills": killed["worker_kills"],
        "rows_lost": after_kills["rows_lost"] + after_cut["rows_lost"],
        "duplicate_rows": after_kills["duplicate_rows"] + after_cut["duplicate_rows"],
        "mixed_model_parts": after_kills["mixed_model_parts"] + after_cut["mixed_model_parts"],
        "max_abs_diff": max(after_kills["max_abs_diff"], after_cut["max_abs_diff"]),
        "bad_parts_redone": len(cut["redone"]),
        "truncated_part_detected": cut["redone"] == [cut["truncated"]],
        "concurrent_refused": both["refused"],
        "concurrent_finished": both["finished"],
    }
    if training:
        found["training_worker_killed"] = training_worker_killed(data, work / "train", logs)
        progress(f"training worker killed: {found['training_worker_killed']}")
        found["diverging_run"] = diverging_run(data, work / "train", logs)
        progress(f"diverging run: {found['diverging_run']}")
    return found


def main(argv: Optional[List[str]] = None) -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 kills over 3,000 rows")
    parser.add_argument("--kills", type=int, default=None, help="kills of the one embed job (default 10; --quick: 4)")
    parser.add_argument("--seed", type=int, default=0, help="where the kills land and which part is cut")
    parser.add_argument("--work", default=None, help="folder for data, outputs and logs (default: a temporary one)")
    args = parser.parse_args(argv)
    kills = args.kills or (4 if args.quick else 10)
    rows = 3000 if args.quick else 6000
    with tempfile.TemporaryDirectory(prefix="deepsets-faults-") as tmp:
        work = Path(args.work or tmp).absolute()
        started = time.perf_counter()
        found = sweep(work, rows, kills, args.seed)
        found["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
