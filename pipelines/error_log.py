"""Where the command line keeps the traceback of an internal error (a bug, an unforeseen failure).

Each traceback goes to a new file of its own in the user's own log folder,
``$XDG_STATE_HOME/deepsets/logs`` (``~/.local/state/deepsets/logs`` when ``XDG_STATE_HOME`` is
not set): never a shared folder such as the system's temp folder, where another user could
plant a symlink under a name the command would write to. The folder is created private
(0700); the file gets a random name, is created exclusively and never through a symlink. When
no such file can be written, the traceback goes to stderr instead. Either way every URI in it
(the command line, the messages) has its password redacted (:mod:`deepsets.pipelines.redaction`).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
import traceback
from pathlib import Path

from deepsets.pipelines.redaction import redact_uris


def log_folder() -> Path:
    """The user's folder for internal-error logs (not created here)."""
    state = os.environ.get("XDG_STATE_HOME", "")
    base = (
        Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    )  # a relative value is ignored, as XDG says
    return base / "deepsets" / "logs"


def private_folder(folder: Path) -> Path:
    """``folder``, created if missing, checked to be a real folder of this user that no one
    else can write to or read (tightened to 0700 if it is this user's but looser).

    Raises:
        OSError: when it cannot be created, or is a symlink, not a folder, or another user's.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = os.lstat(folder)
    if stat.S_ISLNK(found.st_mode) or not stat.S_ISDIR(found.st_mode):
        raise OSError(f"{folder} is not a folder (a symlink or a file is there)")
    if found.st_uid != os.getuid():
        raise OSError(f"{folder} belongs to another user (uid {found.st_uid})")
    if found.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return folder


def write_traceback_file(command: str, argv: list[str], err: BaseException, folder: Path | None = None) -> str:
    """Write ``err``'s traceback, under the command line that met it, to a new file.

    Args:
        command: the subcommand (the start of the file's name).
        argv: the command's arguments, written at the top.
        err: the exception.
        folder: where; default :func:`log_folder`.

    Returns:
        The file's path.

    Raises:
        OSError: when the folder is unusable or the file cannot be written.
    """
    where = private_folder(folder or log_folder())
    # mkstemp: a random name, created exclusively (O_EXCL: never through a symlink), mode 0600
    fd, path = tempfile.mkstemp(
        prefix=f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-", suffix=".log", dir=where
    )
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(redact_uris(f"deepsets {' '.join(argv)}\n\n{''.join(traceback.format_exception(err))}"))
    return path


def report_internal_error(command: str, err: BaseException, summary: str) -> None:
    """Print the one ``internal error:`` line for ``err`` and keep its traceback:
    in a log file named on that line, or, when none can be written, on stderr right after it.

    Args:
        command: the subcommand that failed.
        err: the exception.
        summary: ``err``'s message on one line.
    """
    head = f"internal error: {type(err).__name__}: {summary}"
    try:
        log = write_traceback_file(command, sys.argv[1:], err)
    except OSError as problem:
        print(
            f"{head} (no log file could be written in {log_folder()}: {problem}; the traceback follows)",
            file=sys.stderr,
        )
        print(
            redact_uris("".join(traceback.format_exception(err))), end="", file=sys.stderr
        )  # err's own, not this OSError's on top
        return
    print(f"{head} (traceback in {log})", file=sys.stderr)
