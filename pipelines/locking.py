"""Helpers shared by the kernel locks that claim a folder for one job (the embed output lock,
a training run's claim): both hold ``flock`` on a file that names its holder."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Optional

from deepsets.features import storage


def same_file(fd: int, path: str) -> bool:
    """True when ``path`` still names the file open as ``fd`` (not deleted or replaced since).

    A taker that opened the lock file just before its holder deleted it would otherwise lock a
    file no one else can find.
    """
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)


def holder_record() -> dict:
    """What a lock or claim file says of the process holding it: host, pid, start time, command."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv)[:300],
    }


def read_holder(path: str) -> Optional[dict]:
    """The record in a lock or claim file (local or on object storage); None when unreadable."""
    try:
        return json.loads(storage.read_text(path))
    except (OSError, ValueError):
        return None


def is_holder(holder: Optional[dict], me: dict) -> bool:
    """True when ``holder`` names the process ``me`` (host and pid, never the pid alone)."""
    return bool(holder) and holder.get("host") == me["host"] and holder.get("pid") == me["pid"]


def write_holder(fd: int, me: dict) -> None:
    """Replace the content of the locked file ``fd`` with ``me``, synced."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
    os.fsync(fd)


def unlock(fd: int, path: str, delete: bool) -> None:
    """Drop the kernel lock held through ``fd``; with ``delete`` the file goes first, while still
    locked, so a process that opened it meanwhile finds it replaced (``same_file``) and retries."""
    try:
        if delete:
            os.unlink(path)
    finally:
        os.close(fd)
