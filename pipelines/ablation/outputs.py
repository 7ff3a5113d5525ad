"""Where ``deepsets ablate`` writes: ``--out`` checked up front (:func:`check_out`), the finished
files written, logged and put in place (:func:`report`)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from deepsets.features import storage
from deepsets.pipelines.ablation.config import AblateConfig
from deepsets.pipelines.ablation.report import OUTPUT_NAMES, RETRAIN, log_to_mlflow, replacing_folder, write_outputs
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.models.source import ModelSource


def check_out(out: str, overwrite: bool) -> List[str]:
    """Refuse an ``--out`` that holds an earlier ablation's files; with ``overwrite``, return
    them: :func:`report` replaces them only once the new files are ready, so a run that fails
    leaves the earlier files whole. A local ``--out`` is replaced as a whole folder, so one that
    holds anything but an ablation's files (and its ``retrain/``) is refused.

    Raises:
        JobError: naming the folder and the files found there.
    """
    found = [path for path in (storage.join(out, name) for name in OUTPUT_NAMES) if storage.exists(path)]
    if found and not overwrite:
        names = ", ".join(storage.name_of(path) for path in found)
        raise JobError(
            f"--out {out} already holds an ablation ({names}): pass --overwrite to replace it, or choose another --out"
        )
    if not storage.is_uri(out) and os.path.lexists(out):  # a local --out is replaced as a whole folder
        if not os.path.isdir(out) or os.path.islink(out):
            raise JobError(f"--out {out} is a file, not a folder: choose another --out")
        others = sorted(set(os.listdir(out)) - set(OUTPUT_NAMES) - {RETRAIN})
        if others:
            raise JobError(
                f"--out {out} holds files that are not an ablation's ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}): "
                "ablate replaces the folder as a whole; choose another --out"
            )
    return found


def report(
    cfg: AblateConfig,
    source: ModelSource,
    summary: dict,
    per_row: Optional[dict],
    started: float,
    earlier: Sequence[str] = (),
) -> dict:
    """Write the table, chart and per-row values into ``cfg.out`` (a folder or a URI), log them
    to the model's MLflow run under a folder of their own, and return the finished summary.

    A local ``--out`` is written as a fresh folder beside it, which then replaces it as a whole
    (its ``retrain/`` kept; :func:`replacing_folder`): a failure or a crash never leaves a mix
    of two runs' files, nor an empty folder. On object storage, which has no rename, every file
    is one PUT once all are written, ``ablation.json`` (which names the run's files) last; then
    the files of ``earlier`` (an ablation ``--overwrite`` replaces) that the new run does not
    write are deleted."""
    remote = storage.is_uri(cfg.out)
    final = cfg.out if remote else str(Path(cfg.out).absolute())
    if per_row is not None:  # the rows keyed as the input keys them: its id column, else the row's position
        per_row = {**per_row, "id_column": source.input_spec.schema.id_column or "row"}
    staging = tempfile.TemporaryDirectory(prefix="deepsets-ablation-") if remote else replacing_folder(Path(final))
    with staging as scratch:
        written = write_outputs(Path(scratch), summary, per_row)
        summary["files"] = {name: storage.join(final, Path(path).name) for name, path in written.items()}
        summary["mlflow"] = log_to_mlflow(source, Path(scratch)) if cfg.log_mlflow else None
        summary["seconds"] = round(time.perf_counter() - started, 2)
        (Path(scratch) / "ablation.json").write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
        if remote:
            put_outputs(written, summary["files"], earlier)
    return summary


def put_outputs(written: Dict[str, str], files: Dict[str, str], earlier: Sequence[str]) -> None:
    """PUT each finished local file of ``written`` to its object in ``files`` (by key),
    ``ablation.json`` last; then delete the objects of ``earlier`` that none of them replaced."""
    for name in sorted(written, key=lambda key: key == "table_json"):
        storage.write_bytes(files[name], Path(written[name]).read_bytes())
    replaced = {storage.name_of(path) for path in files.values()}
    for path in earlier:
        if storage.name_of(path) not in replaced:
            storage.delete(path)
