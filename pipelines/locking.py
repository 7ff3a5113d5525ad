"""Helpers shared by the kernel locks that claim a folder for one job (the embed output lock,
a training run's claim): both hold ``flock`` on a file that names its holder."""

from __future__ import annotations

import os


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
