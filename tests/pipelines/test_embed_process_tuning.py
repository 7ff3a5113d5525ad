"""The embed actor's process set-up (``prepare_process``): the forward pass's large buffers,
mapped afresh every batch, fault in as 2 MB huge pages instead of 4 KB pages."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepsets.pipelines.embedding import process_tuning

ALLOCATE = """
import resource, sys
import torch
from deepsets.pipelines.embedding.process_tuning import fix_mmap_threshold, prepare_process
if sys.argv[1] == "prepared":
    prepare_process(1)
else:
    fix_mmap_threshold()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    buffer = torch.empty(16 << 20, dtype=torch.uint8)  # (16M,): over the mmap threshold, mapped afresh each time
    buffer.fill_(1)
    del buffer
print(torch.get_num_threads(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _huge_pages_mode() -> str:
    """The kernel's transparent-huge-page mode ('always', 'madvise', 'never'), '' if unknown."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""
    return text[text.index("[") + 1 : text.index("]")] if "[" in text else ""


def _threads_and_page_faults(mode: str) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if k not in process_tuning.HUGE_PAGES_ENV}
    done = subprocess.run([sys.executable, "-c", ALLOCATE, mode], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    threads, faults = done.stdout.strip().splitlines()[-1].split()
    return int(threads), int(faults)


@pytest.mark.skipif(not process_tuning.is_glibc(), reason="not glibc: the mmap threshold is not set")
@pytest.mark.skipif(
    _huge_pages_mode() != "madvise",
    reason="needs transparent huge pages on request (madvise mode): always gives them unasked, never not at all",
)
def test_a_prepared_process_maps_large_tensors_in_huge_pages():
    (_, plain), (threads, prepared) = _threads_and_page_faults("plain"), _threads_and_page_faults("prepared")
    assert threads == 1
    # 20 buffers of 16 MB: ~82k faults of 4 KB pages; ~10k here with huge pages (each buffer's
    # unaligned ends still fault in 4 KB pages)
    assert plain > 50_000
    assert prepared < plain / 4
