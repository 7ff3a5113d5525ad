"""Lines Ray's C++ core writes straight to fd 2 are dropped there, and only those lines."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from deepsets.pipelines.ray_runtime import RAY_CORE_NOISE
from deepsets.pipelines.stderr_filter import dropping_stderr_lines

CORE_LINE = ("[2026-11-30 10:12:01,412 E 4242 4300] core_worker.cc:2465: Actor with class name: 'MapWorker(MapBatches(FragmentEmbedder))' "
             "and ID: 'f00d' has constructor arguments in the object store and max_restarts > 0. If the arguments in the object "
             "store go out of scope or are lost, the actor restart will fail.")


def test_the_core_line_is_dropped_and_everything_else_reaches_stderr_in_order(capfd):
    with dropping_stderr_lines(RAY_CORE_NOISE) as dropped:
        os.write(2, b"before\n")
        os.write(2, CORE_LINE[:40].encode())  # Ray's line may arrive in pieces
        os.write(2, (CORE_LINE[40:] + "\n").encode())
        os.write(2, b"\rembedding:  50%|#####     | 300/600")  # a progress bar's update: no newline
        os.write(2, b"\n[2026-11-30 10:12:02,000 E 4242 4300] core_worker.cc:99: something else\nafter")
    assert capfd.readouterr().err == ("before\n\rembedding:  50%|#####     | 300/600\n"
                                      "[2026-11-30 10:12:02,000 E 4242 4300] core_worker.cc:99: something else\nafter")
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
