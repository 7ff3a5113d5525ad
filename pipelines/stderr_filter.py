"""Dropping known lines that Ray's C++ core writes straight to this process's stderr.

Ray's core worker (C++) logs some errors to file descriptor 2 directly, so Python's logging
filters and ``RAY_DEDUP_LOGS_SKIP_REGEX`` never see them. One of them is printed at the start
of every Ray Data actor pool (ray-project/ray#53727) and says nothing about the job. While
``dropping_stderr_lines`` is active, fd 2 is a pipe read by a thread that forwards everything
to the real stderr except whole lines that match; a partial line (a progress bar's ``\\r``
update) is forwarded at once unless it could be the start of a Ray core log line.

The thread never stops reading before the pipe ends, whatever happens to the real stderr: a
pipe nobody reads would block every later write to fd 2 once its 64 KiB buffer is full. A
real stderr that fails a write (its reader gone: EPIPE; not writable: EBADF) gets nothing more
and the rest is read and dropped; a non-blocking one that is full is waited for.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import sys
import threading
from collections.abc import Iterator

RAY_CORE_LINE_START = b"["
"""Ray's C++ log lines begin with ``[timestamp``; only such a partial line waits for its end."""

FLUSH_WAIT_S = 5.0
"""How long leaving the block waits for what was written inside it to reach the real stderr."""

FULL_STDERR_WAIT_S = 5.0
"""How long a full non-blocking real stderr is waited for before that output is dropped."""


class _Forwarder(threading.Thread):
    """Reads the pipe that is fd 2 during the block and forwards what it reads to the real stderr.

    It owns ``read_fd`` (the pipe's read end, non-blocking), ``stop_fd`` (the read end of a
    pipe whose write end closes when the block ends) and ``write_fd`` (its own duplicate of the
    real stderr), and closes all three when the pipe ends: when the block ends, or later when a
    child process started inside the block, which holds the pipe as its stderr, ends too.

    Attributes:
        dropped: the lines dropped so far.
        flushed: set once everything written before the block ended has been forwarded.
        write_error: the error that ended writing to the real stderr, if one did.
    """

    def __init__(self, read_fd: int, stop_fd: int, write_fd: int, pattern: re.Pattern | None):
        super().__init__(name="stderr-filter", daemon=True)
        self.read_fd, self.stop_fd, self.write_fd, self.pattern = read_fd, stop_fd, write_fd, pattern
        self.dropped: list[str] = []
        self.flushed = threading.Event()
        self.write_error: OSError | None = None
        self._pending = b""

    def run(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.read_fd, selectors.EVENT_READ)
                selector.register(self.stop_fd, selectors.EVENT_READ)
                while self._serve(selector):
                    pass
            self._end_of_data()
        finally:
            for fd in (self.read_fd, self.stop_fd, self.write_fd):
                os.close(fd)
            self.flushed.set()

    def _serve(self, selector: selectors.BaseSelector) -> bool:
        """Handle what is ready; False once the pipe has ended."""
        for key, _ in selector.select():
            if key.fd == self.stop_fd:  # the block has ended: forward what it wrote, then go on for any child
                selector.unregister(self.stop_fd)
                while (got := self._read()) is not None:
                    if not got:
                        return False
                self._end_of_data()
                self.flushed.set()
            elif self._read() == b"":
                return False
        return True

    def _read(self) -> bytes | None:
        """Read and forward one chunk: the chunk, ``b""`` at the pipe's end, None if none is there."""
        try:
            chunk = os.read(self.read_fd, 65536)
        except BlockingIOError:
            return None
        except OSError:
            return b""  # an unreadable pipe ends like a closed one
        if chunk:
            self._take(chunk)
        return chunk

    def _take(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        self._forward(b"".join(line + b"\n" for line in lines if not self._drop(line)))
        if self._pending and not self._pending.startswith(RAY_CORE_LINE_START):
            self._forward(self._pending)
            self._pending = b""

    def _end_of_data(self) -> None:
        """A partial line left at the end of the data is a whole line."""
        if self._pending and not self._drop(self._pending):
            self._forward(self._pending)
        self._pending = b""

    def _drop(self, line: bytes) -> bool:
        if self.pattern is None:
            return False
        text = line.decode(errors="replace")
        if self.pattern.search(text):
            self.dropped.append(text)
            return True
        return False

    def _forward(self, data: bytes) -> None:
        """Write ``data`` to the real stderr; after a write error, drop it (reading goes on)."""
        while data and self.write_error is None:
            try:
                data = data[os.write(self.write_fd, data) :]
            except BlockingIOError:  # a non-blocking stderr that is full: wait for room
                if not _writable_within(self.write_fd, FULL_STDERR_WAIT_S):
                    return  # still full: this output is dropped, later output is tried again
            except OSError as err:
                self.write_error = err


def _writable_within(fd: int, seconds: float) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_WRITE)
        return bool(selector.select(seconds))


@contextlib.contextmanager
def dropping_stderr_lines(patterns: tuple[str, ...]) -> Iterator[list[str]]:
    """Drop whole lines written to file descriptor 2 that contain one of ``patterns``.

    Start it after any child processes (a local Ray) are started: a child started inside keeps
    the pipe as its stderr (its lines are filtered too, until it ends); leaving the block does
    not wait for it. Children started after the block get the real stderr. Yields the list the
    dropped lines are appended to.

    Args:
        patterns: plain substrings (not regular expressions); empty ones are ignored, and with
            none left nothing is dropped.
    """
    wanted = [re.escape(p) for p in patterns if p]
    pattern = re.compile("|".join(wanted)) if wanted else None
    sys.stderr.flush()
    # os.pipe and os.dup give descriptors that are not inherited: a child started inside the
    # block gets only fd 2, never the read ends or this duplicate of the real stderr
    real_stderr = os.dup(2)
    read_fd, write_fd = os.pipe()
    stop_read, stop_write = os.pipe()
    os.set_blocking(read_fd, False)  # the read end only: writers to fd 2 still block when it is full
    forwarder = _Forwarder(read_fd, stop_read, os.dup(real_stderr), pattern)
    forwarder.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield forwarder.dropped
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2, inheritable=True)  # the real stderr again, for this process and the children it starts
        os.close(real_stderr)
        os.close(stop_write)  # the forwarder forwards what is in the pipe, then goes on only while a child holds it
        forwarder.flushed.wait(FLUSH_WAIT_S)
