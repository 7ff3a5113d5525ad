"""One run per run folder: a training run claims ``storage_path/run_name`` before it writes
anything there (``spec.json``, ``run.json``, checkpoints), so a second run given the same name
fails at once instead of sharing the folder.

    claim = RunClaim(run_dir, run_name, storage_path)
    claim.take(resume=False)       # JobError when another run has the folder
    try:
        ...train...
    finally:
        claim.release(keep=bool(checkpoint_dirs(run_dir)))

The claim is the file ``run.claim`` (its holder's host, pid, start time and command). On local
disk a new run creates it with ``O_CREAT | O_EXCL``: of two runs with one name exactly one
creates it. The holder also keeps a kernel lock (``flock``) on it while it runs, which the
kernel drops when the process ends however it ends; ``--resume`` takes that lock, so a run is
not resumed while it still runs. A new run that fails before its first complete checkpoint
gives its claim back, and one killed before it leaves a claim whose lock is free, which the
next run of that name takes over: the same command can run again.

On object storage there is no create-if-absent or lock in pyarrow's filesystems: a new run
checks that the claim is absent, writes its own and reads it back, which refuses a run that
comes after another's claim is written but not two started within the same moment; and a
resume there cannot tell whether the run still runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from typing import Optional

from deepsets.features import storage
from deepsets.pipelines.errors import JobError
from deepsets.pipelines.locking import holder_record, is_holder, read_holder, same_file, unlock, write_holder
from deepsets.pipelines.training.resume import checkpoint_dirs

CLAIM = "run.claim"


class RunClaim:
    """A training run's claim on its run folder.

    Args:
        run_dir: the run folder (a local path or a URI).
        run_name: the run's name, for messages.
        storage_path: ``tracking.storage_path``, for messages.
    """

    def __init__(self, run_dir: str, run_name: str, storage_path: str) -> None:
        self.run_dir, self.run_name, self.storage_path = run_dir, run_name, storage_path
        self.path = storage.join(run_dir, CLAIM)
        self.me = holder_record()
        self.new = False  # True once a new run holds the claim
        self.took_over: Optional[dict] = None  # the claim of an ended run without a checkpoint that a new run took
        self._fd: Optional[int] = None  # local: the open claim file whose flock this run holds

    def take(self, resume: bool) -> "RunClaim":
        """Claim the folder: a new run creates the claim; ``resume`` takes over the existing one
        (a run started before claims existed has none: it is created). On local disk a claim
        whose lock is free belongs to a run that has ended: a new run takes it over when that
        run left no checkpoint (it failed or was killed before its first).

        Raises:
            JobError: when another run has claimed the folder (a new run), or still runs in it,
                naming that run.
        """
        if storage.is_uri(self.run_dir):
            return self._take_object(resume)
        os.makedirs(storage.local_path(self.run_dir), exist_ok=True)
        path = storage.local_path(self.path)
        while True:
            try:
                fd, found = os.open(path, os.O_RDWR | os.O_CREAT | (0 if resume else os.O_EXCL), 0o644), resume
            except FileExistsError:
                try:
                    fd, found = os.open(path, os.O_RDWR), True
                except FileNotFoundError:  # its run gave it back meanwhile
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._refuse_running(resume)
            if same_file(fd, path):
                break
            os.close(fd)  # given back after we opened it: claim anew
        if found and not resume and checkpoint_dirs(self.run_dir):
            os.close(fd)
            self._refuse_new(self._holder())
        self._fd, self.new = fd, not resume
        self.took_over = self._holder() if found and not resume else None
        write_holder(fd, self.me)
        return self

    def _take_object(self, resume: bool) -> "RunClaim":
        if not resume and storage.exists(self.path):
            self._refuse_new(self._holder())
        storage.write_text(self.path, json.dumps(self.me))
        if not resume and self._holder() != self.me:  # another run wrote its claim over ours meanwhile
            self._refuse_new(self._holder())
        self.new = not resume
        return self

    def _refuse_new(self, holder: Optional[dict]) -> None:
        gone = (
            f"; if that run is gone and left no checkpoint, delete {self.path}" if storage.is_uri(self.run_dir) else ""
        )
        raise JobError(
            f"run '{self.run_name}' already exists in {self.storage_path} ({_who(holder)}): pass --resume to continue "
            f"it, or choose another tracking.run_name{gone}"
        ) from None

    def _refuse_running(self, resume: bool) -> None:
        holder = self._holder()
        for _ in range(50):  # a run that has just taken the claim writes its name an instant later
            if holder:
                break
            time.sleep(0.01)
            holder = self._holder()
        what = "wait for it to end before --resume" if resume else "choose another tracking.run_name"
        raise JobError(
            f"run '{self.run_name}' in {self.storage_path} is running now ({_who(holder)}): {what}"
        ) from None

    def _holder(self) -> Optional[dict]:
        return read_holder(self.path)

    def _is_mine(self, holder: Optional[dict]) -> bool:
        return is_holder(holder, self.me)

    def release(self, keep: bool) -> None:
        """End this run's hold. A new run that leaves no checkpoint (``keep`` False) gives the
        folder back: the claim is deleted, so the same command can run again; otherwise the
        claim stays and the folder is the run's (``--resume`` continues it)."""
        give_back = self.new and not keep and self._is_mine(self._holder())
        if self._fd is not None:
            unlock(self._fd, storage.local_path(self.path), delete=give_back)
            self._fd = None
        elif give_back:
            storage.delete(self.path)


def _who(holder: Optional[dict]) -> str:
    if not holder:
        return "claimed by a run whose claim file cannot be read"
    return f"started {holder.get('started')} by pid {holder.get('pid')} on {holder.get('host')}"
