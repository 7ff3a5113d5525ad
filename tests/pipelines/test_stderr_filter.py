"""Lines Ray's C++ core writes straight to fd 2 are dropped there, and only those lines."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.pipelines.ray_runtime import RAY_CORE_NOISE
from deepsets.pipelines.stderr_filter import dropping_stderr_lines

CORE_LINE = (
    "[2026-11-30 10:12:01,412 E 4242 4300] core_worker.cc:2465: Actor with class name: 'MapWorker(MapBatches(FragmentEmbedder))' "
    "and ID: 'f00d' has constructor arguments in the object store and max_restarts > 0. If the arguments in the object "
    "store go out of scope or are lost, the actor restart will fail."
)


def test_the_core_line_is_dropped_and_everything_else_reaches_stderr_in_order(capfd):
    with dropping_stderr_lines(RAY_CORE_NOISE) as dropped:
        os.write(2, b"before\n")
        os.write(2, CORE_LINE[:40].encode())  # Ray's line may arrive in pieces
        os.write(2, (CORE_LINE[40:] + "\n").encode())
        os.write(2, b"\rembedding:  50%|#####     | 300/600")  # a progress bar's update: no newline
        os.write(2, b"\n[2026-11-30 10:12:02,000 E 4242 4300] core_worker.cc:99: something else\nafter")
    assert capfd.readouterr().err == (
        "before\n\rembedding:  50%|#####     | 300/600\n"
        "[2026-11-30 10:12:02,000 E 4242 4300] core_worker.cc:99: something else\nafter"
    )
    assert dropped == [CORE_LINE]


def test_stderr_is_the_real_one_again_after_the_block(capfd):
    with dropping_stderr_lines(RAY_CORE_NOISE):
        pass
    os.write(2, (CORE_LINE + "\n").encode())
    assert capfd.readouterr().err == CORE_LINE + "\n"


line_text = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=50, deadline=None)
@given(lines=st.lists(st.one_of(line_text, st.just(CORE_LINE)), max_size=8))
def test_any_mix_of_lines_loses_only_the_core_lines(lines):
    read_fd, write_fd = os.pipe()  # stands in for the terminal: capfd does not nest in hypothesis
    saved = os.dup(2)
    os.dup2(write_fd, 2)
    try:
        with dropping_stderr_lines(RAY_CORE_NOISE) as dropped:
            for line in lines:
                os.write(2, (line + "\n").encode())
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        seen = pipe.read().decode()
    assert seen == "".join(line + "\n" for line in lines if line != CORE_LINE)
    assert dropped == [line for line in lines if line == CORE_LINE]


def test_no_patterns_drop_nothing(capfd):
    with dropping_stderr_lines(()) as dropped, dropping_stderr_lines(("",)) as dropped_too:
        os.write(2, b"first\n" + (CORE_LINE + "\n").encode() + b"last\n")
    assert capfd.readouterr().err == "first\n" + CORE_LINE + "\nlast\n"
    assert dropped == [] and dropped_too == []


def run_script(body: str) -> subprocess.CompletedProcess:
    """``body`` run by a fresh Python with the helpers below; a hang fails the test by its timeout."""
    script = textwrap.dedent("""
        import json, os, subprocess, sys, threading
        from deepsets.pipelines.stderr_filter import dropping_stderr_lines

        def open_fds():
            return sorted(fd for fd in range(3, 1024) if is_open(fd))

        def is_open(fd):
            try:
                os.fstat(fd)
            except OSError:
                return False
            return True

        def forwarders_finished():
            for thread in threading.enumerate():
                if thread.name == "stderr-filter":
                    thread.join(30)
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, check=False)


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")


@needs_proc
@pytest.mark.parametrize(
    "broken_stderr",
    [
        "read_end, write_end = os.pipe(); os.close(read_end); os.dup2(write_end, 2); os.close(write_end)",  # EPIPE: its reader is gone
        "os.dup2(os.open(os.devnull, os.O_RDONLY), 2)",  # EBADF: not open for writing
    ],
    ids=["reader-gone", "read-only"],
)
def test_a_stderr_that_fails_every_write_is_still_drained_and_every_fd_closed(broken_stderr):
    found = run_script(f"""
        {broken_stderr}
        before = open_fds()
        with dropping_stderr_lines(("never there",)):
            for _ in range(64):  # 256 KiB: four times what a pipe holds unread
                os.write(2, b"x" * 4095 + b"\\n")
        forwarders_finished()
        print(json.dumps({{"before": before, "after": open_fds()}}))
    """)
    assert found.returncode == 0, found.stderr.decode()
    fds = json.loads(found.stdout)
    assert fds["after"] == fds["before"]


@needs_proc
def test_a_non_blocking_stderr_gets_every_byte_in_order():
    found = run_script("""
        import time
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # as a parent that shares its terminal non-blocking leaves it
        os.dup2(write_end, 2)
        os.close(write_end)
        received = bytearray()
        def read_slowly():
            while chunk := os.read(read_end, 4096):
                received.extend(chunk)
                time.sleep(0.001)  # the pipe fills: writes to it fail with EAGAIN until read
        reader = threading.Thread(target=read_slowly)
        reader.start()
        sent = b"".join(b"line %06d\\n" % i for i in range(100_000))  # 1.2 MB
        with dropping_stderr_lines(("never there",)):
            for start in range(0, len(sent), 4096):
                os.write(2, sent[start:start + 4096])
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # the pipe's last write end closes
        forwarders_finished()
        reader.join(60)
        print(json.dumps({"same": bytes(received) == sent, "received": len(received), "sent": len(sent)}))
    """)
    assert found.returncode == 0, found.stderr.decode()
    assert json.loads(found.stdout) == {"same": True, "received": 1_200_000, "sent": 1_200_000}


@needs_proc
def test_a_child_started_inside_keeps_only_its_stderr_and_its_lines_are_still_filtered():
    child = (
        "import json, os, sys; sys.stdin.read(); "
        "fds = [(fd, os.readlink(f'/proc/self/fd/{fd}')) for fd in range(3, 1024) if os.path.exists(f'/proc/self/fd/{fd}')]; "
        "print(json.dumps(fds), flush=True); "
        "sys.stderr.write('drop me\\nchild done\\n')"
    )
    found = run_script(f"""
        before = open_fds()
        with dropping_stderr_lines(("drop me",)):
            inside = subprocess.Popen([sys.executable, "-c", {child!r}], stdin=subprocess.PIPE)
        os.write(2, b"block left\\n")
        inside.stdin.close()  # the child writes and ends only now, after the block
        inside.wait(60)
        forwarders_finished()  # the pipe ended with the child: its lines are forwarded, every fd closed
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('drop me: not filtered now\\\\n')"])
        print(json.dumps({{"before": before, "after": open_fds()}}))
    """)
    assert found.returncode == 0, found.stderr.decode()
    child_fds, fds = (json.loads(line) for line in found.stdout.decode().splitlines())
    assert child_fds == []  # neither the pipe's read end nor the real stderr's duplicate
    assert fds["after"] == fds["before"]
    assert found.stderr.decode() == "block left\nchild done\ndrop me: not filtered now\n"
