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
"mixed_model_parts": 0, "bad_parts_redone": K, ...}``. The faults themselves:
:mod:`benchmarks.faults.embed_faults` and :mod:`benchmarks.faults.training_faults`; starting and
killing jobs: :mod:`benchmarks.faults.processes`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import List, Optional

from benchmarks.faults.embed_faults import (
    audit,
    concurrent_jobs,
    embed_command,
    killed_embed_job,
    parts_written,
    save_untrained_model,
    truncated_part,
)
from benchmarks.faults.processes import finish, start
from benchmarks.faults.training_faults import diverging_run, training_worker_killed


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
