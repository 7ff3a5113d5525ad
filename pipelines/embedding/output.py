"""The output folder of an embedding job: its manifest (what ``--resume`` checks), getting it
ready (fresh, resumed or overwritten), and the final accounting from the files themselves.

    embeddings/part-FFFFF-NNNNN.parquet   source_file, source_row, <id column>, embedding
                                          [, vector_<modality>, present_<modality> ...]
    rejects/part-FFFFF-NNNNN.parquet      the rejected rows as read, source_file, source_row,
                                          reject_column, reject_reason
    _manifest.json                        model, inputs, fragments (what --resume checks)
    _SUCCESS.json                         the summary of the finished job
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import List, Optional

import polars as pl
import pyarrow.parquet as pq

from features.fragments import Fragment
from pipelines.embedding.worker import EMBEDDINGS, REJECT_COLUMN, REJECT_REASON, REJECTS
from pipelines.errors import JobError

MANIFEST, SUCCESS = "_manifest.json", "_SUCCESS.json"
MANIFEST_FORMAT = 1


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def prepare_output(out: Path, manifest: dict, resume: bool, overwrite: bool) -> List[Fragment]:
    """Make ``out`` ready and return every fragment of the job (a resumed job keeps its plan).

    Raises:
        JobError: when ``out`` holds a job and neither ``resume`` nor ``overwrite`` is given,
            or ``resume`` meets a job made with another model, inputs or columns.
    """
    old_path = out / MANIFEST
    stray = [p for p in (out / EMBEDDINGS, out / REJECTS) if p.exists() and any(p.iterdir())]
    if old_path.exists() and resume:
        old = json.loads(old_path.read_text(encoding="utf-8"))
        changed = [k for k in ("format", "weights_sha256", "with_modalities", "tower", "inputs") if old.get(k) != manifest.get(k)]
        if changed:
            raise JobError(f"cannot resume the job in {out}: its {', '.join(changed)} differ from this run's "
                               "(same model, inputs and --with-modalities needed; or pass --overwrite to start again)")
        manifest["fragments"] = old["fragments"]
    elif old_path.exists() or stray:
        if not overwrite:
            state = "a finished job" if (out / SUCCESS).exists() else "an unfinished job"
            raise JobError(f"{out} already holds {state}: pass --resume to complete it, or --overwrite to replace it")
        for path in (out / EMBEDDINGS, out / REJECTS):
            shutil.rmtree(path, ignore_errors=True)
        for path in (old_path, out / SUCCESS):
            path.unlink(missing_ok=True)
    for sub in (EMBEDDINGS, REJECTS):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (out / sub).glob("*.tmp-*"):  # from workers killed mid-write
            leftover.unlink()
    (out / SUCCESS).unlink(missing_ok=True)
    write_json(old_path, manifest)
    return [Fragment.from_dict(f) for f in manifest["fragments"]]


def duplicate_ids(id_column: str, outputs: List[Path], rejects: List[Path]) -> dict:
    """Ids that occur more than once among all input rows (written and rejected)."""
    scans = [pl.scan_parquet([str(p) for p in outputs]).select(pl.col(id_column))]
    if rejects:
        dtype = scans[0].collect_schema()[id_column]
        scans.append(pl.scan_parquet([str(p) for p in rejects]).select(pl.col(id_column).cast(dtype)))
    counts = pl.concat(scans).group_by(id_column).agg(pl.len().alias("n")).filter(pl.col("n") > 1).collect()
    examples = counts.sort("n", descending=True).head(5)
    return {"ids": counts.height, "extra_rows": int((counts["n"] - 1).sum()) if counts.height else 0,
            "examples": {str(k): int(v) for k, v in zip(examples[id_column].to_list(), examples["n"].to_list())}}


def account(out: Path, fragments: List[Fragment], id_column: Optional[str]) -> dict:
    """Count rows from the written files.

    Raises:
        JobError: if a fragment has no output or rows are unaccounted for.
    """
    outputs = [out / EMBEDDINGS / f.name for f in fragments]
    missing = [p.name for p in outputs if not p.exists()]
    if missing:
        raise JobError(f"{len(missing)} fragment(s) have no output (first: {missing[0]}); rerun with --resume")
    rejects = [p for p in (out / REJECTS / f.name for f in fragments) if p.exists()]
    rows_in = sum(f.rows for f in fragments)
    rows_out = sum(pq.read_metadata(p).num_rows for p in outputs)
    reasons: Counter = Counter()
    for path in rejects:
        table = pq.read_table(path, columns=[REJECT_COLUMN, REJECT_REASON])
        reasons.update(zip(table.column(REJECT_COLUMN).to_pylist(), table.column(REJECT_REASON).to_pylist()))
    rows_rejected = sum(reasons.values())
    if rows_in != rows_out + rows_rejected:
        raise JobError(f"rows unaccounted for in {out}: {rows_in} in, {rows_out} written, {rows_rejected} rejected")
    summary = {
        "rows_in": rows_in, "rows_out": rows_out, "rows_rejected": rows_rejected,
        "rejected_by_reason": [{"column": c, "reason": r, "rows": n} for (c, r), n in reasons.most_common()],
    }
    if id_column:
        summary["duplicate_ids"] = duplicate_ids(id_column, outputs, rejects)
    return summary


