"""The output folder of an embedding job: one job at a time (a lock), its manifest (what
``--resume`` checks), getting it ready (fresh, resumed or overwritten), verifying the parts a
resumed job keeps, and the final accounting from the files themselves.

The folder's names (``embeddings/``, ``rejects/``, ``_manifest.json``, ``_SUCCESS.json``,
``_job.lock``) and what each holds: :mod:`deepsets.pipelines.embedding.layout`.

A part is written under a hidden name (``.part-...tmp-PID``, which Arrow and polars skip when
reading the folder), synced to disk, then renamed into place (and the folder synced), so a part
that exists is complete: after a crash or a power loss ``--resume`` redoes only the fragments
without one, and checks each part it keeps (footer, rows, model fingerprint): a corrupt part is
redone, while a part that could not be read (a network error) stops the job with nothing deleted.

On object storage (``--output s3://bucket/prefix``) there is no rename: each part is one PUT of
the finished object, which a reader sees whole or not at all; the manifest, then
``_SUCCESS.json``, are single PUTs too. The lock there is a best-effort claim (read, then
write, then read back), not an atomic one: do not start two jobs on one prefix at once. On
local disk the lock is a kernel lock (``flock``) on ``_job.lock``, which the kernel releases
when the job's process ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from typing import List, Optional, Tuple

import polars as pl
import pyarrow.parquet as pq

from deepsets.features import storage
from deepsets.features.fragments import Fragment
from deepsets.pipelines.embedding.layout import (
    EMBEDDINGS,
    FINGERPRINT_KEY,
    LOCK,
    MANIFEST,
    OURS,
    REJECT_COLUMN,
    REJECT_REASON,
    REJECTS,
    SUCCESS,
    part_path,
    rejects_path,
)
from deepsets.pipelines.embedding.parts import CorruptPart, read_footer
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.locking import holder_record, is_holder, read_holder, same_file, unlock, write_holder

MANIFEST_FORMAT = 2
"""The version of ``_manifest.json``'s content; a resumed job needs the same."""


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` whole or not at all (a local temp file synced and renamed, or one PUT)."""
    storage.write_text(path, json.dumps(data, indent=1, sort_keys=True))


def read_metadata(path: str) -> pq.FileMetaData:
    """A part's Parquet footer, local or on object storage."""
    store, inner = storage.filesystem(path)
    return pq.read_metadata(inner, filesystem=store)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class OutputLock:
    """An exclusive claim on an output folder for one job.

    The lock file names its holder (host, pid, start time, command). On local disk the claim is
    a kernel lock on that file (``flock``), held while the job runs and dropped by the kernel
    when its process ends, however it ends: a free lock is taken over, a held one refuses the
    job. On object storage a lock left by a process of this host that is gone is stale and taken
    over; any other lock refuses the job.

    Raises:
        JobError: (on enter) when another live job holds the folder, naming it.
    """

    def __init__(self, out: str) -> None:
        self.out = out
        self.path = storage.join(out, LOCK)
        self.me = holder_record()
        self.took_over: Optional[dict] = None
        self._fd: Optional[int] = None  # local: the open lock file whose flock this job holds

    def __enter__(self) -> "OutputLock":
        if storage.is_uri(self.out):
            return self._claim_object()
        os.makedirs(self.out, exist_ok=True)
        return self._claim_local()

    def _claim_local(self) -> "OutputLock":
        """A kernel lock (``flock``) on the lock file, held through an open file for the job's
        life: the kernel drops it when the holder exits or dies, so a file whose lock is free
        was left by a job that is gone and is taken over, and of two jobs exactly one gets it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._refuse(self._named_holder(), unnamed="a job that is just starting")
            if same_file(fd, self.path):
                break
            os.close(fd)  # the holder deleted the file as it finished, after we opened it: lock the new one
        self._fd = fd
        previous = self._holder()
        self.took_over = previous if previous else None
        write_holder(fd, self.me)
        return self

    def _claim_object(self) -> "OutputLock":
        """Object storage has no create-if-absent here: read, write ours, read it back."""
        if storage.exists(self.path):
            holder = self._holder()
            if not self._stale(holder):
                self._refuse(holder)
            self.took_over = holder
        storage.write_text(self.path, json.dumps(self.me))
        if self._holder() != self.me:
            self._refuse(self._holder())
        return self

    def _stale(self, holder: Optional[dict]) -> bool:
        return bool(holder) and holder.get("host") == self.me["host"] and not _alive(int(holder.get("pid", -1)))

    def _refuse(self, holder: Optional[dict], unnamed: str = "an unreadable lock") -> None:
        who = f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}" if holder else unnamed
        gone = (
            f", or delete {self.path} if that job is gone" if storage.is_uri(self.out) else ""
        )  # a local lock frees itself
        raise JobError(f"{self.out} is in use by another embed job ({who}): wait for it to finish{gone}") from None

    def _holder(self) -> Optional[dict]:
        return read_holder(self.path)

    def _named_holder(self) -> Optional[dict]:
        """The job a held lock's file names. A job that has just taken the lock writes its name an
        instant later (until then the file is empty or names the gone job before it), so the file
        is read again for up to half a second; None when it names no live job by then."""
        for _ in range(50):
            holder = self._holder()
            if holder and not self._stale(holder):
                return holder
            time.sleep(0.01)
        return None

    def _is_mine(self, holder: Optional[dict]) -> bool:
        return is_holder(holder, self.me)

    def __exit__(self, *exc) -> None:
        if self._fd is not None:  # local: holding the kernel lock, the file is ours
            unlock(self._fd, self.path, delete=self._is_mine(self._holder()))
            self._fd = None
        elif self._is_mine(self._holder()):
            storage.delete(self.path)


def _entries(out: str) -> List[Tuple[str, str]]:
    """``(sub folder, name)`` of everything in ``embeddings/`` and ``rejects/``."""
    return [(sub, name) for sub in (EMBEDDINGS, REJECTS) for name, _ in storage.children(storage.join(out, sub))]


def _clear_ours(out: str, entries: List[Tuple[str, str]]) -> None:
    for sub, name in entries:
        if OURS.match(name):
            storage.delete(storage.join(out, sub, name))


def prepare_output(out: str, manifest: dict, resume: bool, overwrite: bool) -> List[Fragment]:
    """Make ``out`` ready and return every fragment of the job (a resumed job keeps its plan).
    Only files this job writes are ever deleted.

    Raises:
        JobError: when ``out`` holds a job and neither ``resume`` nor ``overwrite`` is given,
            ``resume`` meets a job made with another model, inputs or columns, or the part
            folders hold files this job did not write.
    """
    old_path, success = storage.join(out, MANIFEST), storage.join(out, SUCCESS)
    ours = _entries(out)
    foreign = sorted(f"{sub}/{name}" for sub, name in ours if not OURS.match(name))
    if foreign:
        raise JobError(
            f"{out} holds files an embed job did not write ({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}): "
            "move them away or choose another --output"
        )
    has_manifest = storage.exists(old_path)
    if has_manifest and resume:
        old = json.loads(storage.read_text(old_path))
        changed = [
            k
            for k in ("format", "weights_sha256", "spec_sha256", "model_args", "with_modalities", "tower", "inputs")
            if old.get(k) != manifest.get(k)
        ]
        if changed:
            raise JobError(
                f"cannot resume the job in {out}: its {', '.join(changed)} differ from this run's "
                "(same model, inputs and --with-modalities needed; or pass --overwrite to start again)"
            )
        manifest["fragments"] = old["fragments"]
    elif has_manifest or ours:
        if not overwrite:
            if storage.exists(success):
                raise JobError(
                    f"{out} already holds a finished job: choose another --output, or pass --overwrite to replace it"
                )
            raise JobError(
                f"{out} already holds an unfinished job: pass --resume to complete it, or --overwrite to replace it"
            )
        _clear_ours(out, ours)
        for path in (old_path, success):
            storage.delete(path)
    for sub in (EMBEDDINGS, REJECTS):
        storage.make_dirs(storage.join(out, sub))
    for sub, name in ours:
        if (
            name.startswith(".part-") and ".tmp-" in name
        ):  # from workers killed mid-write (gone already after an overwrite)
            storage.delete(storage.join(out, sub, name))
    storage.delete(success)
    write_json(old_path, manifest)
    return [Fragment.from_dict(f) for f in manifest["fragments"]]


def _part_problem(out: str, fragment: Fragment, fingerprint: str) -> Optional[str]:
    """Why a fragment's existing part cannot be kept (None if it can): a corrupt file, rows
    missing, another model's fingerprint.

    Raises:
        JobError: a part or its rejects could not be read (a network error, a timeout): the
            part may be fine, so nothing is deleted and the job can be resumed.
    """
    part, rejects = part_path(out, fragment.name), rejects_path(out, fragment.name)
    try:
        meta = read_footer(part)
        rejected = read_footer(rejects).num_rows if storage.exists(rejects) else 0
    except CorruptPart as err:
        return f"unreadable ({err})"
    except OSError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise JobError(
            f"cannot check {fragment.name} in {out} ({first}): nothing was deleted; run the job again with --resume"
        ) from err
    found = (meta.metadata or {}).get(FINGERPRINT_KEY, b"").decode()
    if found != fingerprint:
        return f"written by another model (weights {found[:12] or 'unknown'})"
    if meta.num_rows + rejected != fragment.rows:
        return f"{meta.num_rows} rows written + {rejected} rejected, the fragment has {fragment.rows}"
    return None


def parts_to_do(out: str, fragments: List[Fragment], fingerprint: str) -> Tuple[List[Fragment], List[dict]]:
    """The fragments still to embed: those without a part, and those whose part fails its check
    (removed, to be redone). Returns ``(to do, [{"part", "problem"}] redone)``."""
    todo, redone = [], []
    for fragment in fragments:
        part = part_path(out, fragment.name)
        if not storage.exists(part):
            todo.append(fragment)
            continue
        problem = _part_problem(out, fragment, fingerprint)
        if problem:
            redone.append({"part": fragment.name, "problem": problem})
            storage.delete(part)
            storage.delete(rejects_path(out, fragment.name))
            todo.append(fragment)
    return todo, redone


def duplicate_ids(id_column: str, outputs: List[str], rejects: List[str]) -> dict:
    """Ids that occur more than once among all input rows (written and rejected), counted by
    polars' streaming engine (memory follows the distinct ids, not the rows)."""
    scans = [pl.scan_parquet([str(p) for p in outputs]).select(pl.col(id_column))]
    if rejects:
        dtype = scans[0].collect_schema()[id_column]
        scans.append(pl.scan_parquet([str(p) for p in rejects]).select(pl.col(id_column).cast(dtype)))
    counts = (
        pl.concat(scans)
        .group_by(id_column)
        .agg(pl.len().alias("n"))
        .filter(pl.col("n") > 1)
        .collect(engine="streaming")
    )
    examples = counts.sort("n", descending=True).head(5)
    return {
        "ids": counts.height,
        "extra_rows": int((counts["n"] - 1).sum()) if counts.height else 0,
        "examples": {str(k): int(v) for k, v in zip(examples[id_column].to_list(), examples["n"].to_list())},
    }


def account(out: str, fragments: List[Fragment], id_column: Optional[str], fingerprint: str) -> dict:
    """Count rows from the written files; every part must carry the job's model fingerprint.

    Raises:
        JobError: if a fragment has no output, a part was written by another model, or rows
            are unaccounted for.
    """
    outputs = [part_path(out, f.name) for f in fragments]
    missing = [storage.name_of(p) for p in outputs if not storage.exists(p)]
    if missing:
        raise JobError(f"{len(missing)} fragment(s) have no output (first: {missing[0]}); rerun with --resume")
    footers = [read_metadata(p) for p in outputs]  # one read per part (a GET each on object storage)
    mixed = [
        storage.name_of(p)
        for p, meta in zip(outputs, footers)
        if (meta.metadata or {}).get(FINGERPRINT_KEY, b"").decode() != fingerprint
    ]
    if mixed:
        raise JobError(
            f"{len(mixed)} part(s) in {out} were written by another model than the manifest's (first: {mixed[0]}): "
            "another job wrote into this folder; rerun with --overwrite"
        )
    rejects = [p for p in (rejects_path(out, f.name) for f in fragments) if storage.exists(p)]
    rows_in = sum(f.rows for f in fragments)
    rows_out = sum(meta.num_rows for meta in footers)
    reasons: Counter = Counter()
    for path in rejects:
        store, inner = storage.filesystem(path)
        table = pq.read_table(inner, columns=[REJECT_COLUMN, REJECT_REASON], filesystem=store)
        reasons.update(zip(table.column(REJECT_COLUMN).to_pylist(), table.column(REJECT_REASON).to_pylist()))
    rows_rejected = sum(reasons.values())
    if rows_in != rows_out + rows_rejected:
        raise JobError(f"rows unaccounted for in {out}: {rows_in} in, {rows_out} written, {rows_rejected} rejected")
    summary = {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_rejected": rows_rejected,
        "rejected_by_reason": [{"column": c, "reason": r, "rows": n} for (c, r), n in reasons.most_common()],
    }
    if id_column:
        summary["duplicate_ids"] = duplicate_ids(id_column, outputs, rejects)
    return summary
