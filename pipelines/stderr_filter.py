"""Dropping known lines that Ray's C++ core writes straight to this process's stderr.

Ray's core worker (C++) logs some errors to file descriptor 2 directly, so Python's logging
filters and ``RAY_DEDUP_LOGS_SKIP_REGEX`` never see them. One of them is printed at the start
of every Ray Data actor pool (ray-project/ray#53727) and says nothing about the job. While
``dropping_stderr_lines`` is active, fd 2 is a pipe read by a thread that forwards everything
to the real stderr except whole lines that match; a partial line (a progress bar's ``\\r``
update) is forwarded at once unless it could be the start of a Ray core log line.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Iterator, List

RAY_CORE_LINE_START = b"["
"""Ray's C++ log lines begin with ``[timestamp``; only such a partial line waits for its end."""


class _Forwarder(threading.Thread):
    def __init__(self, read_fd: int, write_fd: int, pattern: re.Pattern):
        super().__init__(name="stderr-filter", daemon=True)
        self.read_fd, self.write_fd, self.pattern = read_fd, write_fd, pattern
        self.dropped: List[str] = []

    def run(self) -> None:
        pending = b""
        while chunk := os.read(self.read_fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            self._forward(b"".join(line + b"\n" for line in lines if not self._drop(line)))
            if pending and not pending.startswith(RAY_CORE_LINE_START):
                self._forward(pending)
                pending = b""
        if pending and not self._drop(pending):
            self._forward(pending)
        os.close(self.read_fd)

    def _drop(self, line: bytes) -> bool:
        text = line.decode(errors="replace")
        if self.pattern.search(text):
            self.dropped.append(text)
            return True
        return False

    def _forward(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.write_fd, data):]


@contextlib.contextmanager
def dropping_stderr_lines(patterns: tuple[str, ...]) -> Iterator[List[str]]:
    """Drop whole lines written to file descriptor 2 that contain one of ``patterns``.

    Start it after any child processes (a local Ray) are started: a child started inside
    would keep the pipe as its stderr. Yields the list the dropped lines are appended to.

    Args:
        patterns: plain substrings (not regular expressions).
    """
    pattern = re.compile("|".join(re.escape(p) for p in patterns))
    sys.stderr.flush()
    real_stderr = os.dup(2)
    read_fd, write_fd = os.pipe()
    forwarder = _Forwarder(read_fd, real_stderr, pattern)
    forwarder.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield forwarder.dropped
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # the pipe's last write end closes here: the forwarder reads to its end
        forwarder.join(timeout=5)
        if not forwarder.is_alive():
            os.close(real_stderr)
