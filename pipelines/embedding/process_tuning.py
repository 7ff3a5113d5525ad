"""How an embed actor's process allocates memory: glibc's mmap threshold fixed, torch's CPU
buffers on transparent huge pages, and a finished fragment's memory handed back to the OS.

    prepare_process(threads)   # once, before the process's first tensor
    ...                        # embed a fragment
    release_memory()           # after each fragment

Not glibc (macOS, musl): the glibc calls are skipped and only the thread count and the huge
pages switch apply.
"""

from __future__ import annotations

import ctypes
import os

import pyarrow as pa
import torch

try:
    _LIBC = ctypes.CDLL("libc.so.6")  # glibc, for mallopt and malloc_trim
except OSError:  # not glibc (macOS, musl): nothing to set or trim
    _LIBC = None

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter for the mmap threshold; setting it disables the dynamic threshold."""

MMAP_THRESHOLD_BYTES = 8 << 20
"""Allocations from this size up are mmapped, so freeing them returns them to the OS at once."""

HUGE_PAGES_ENV = {"THP_MEM_ALLOC_ENABLE": "1"}
"""Torch's switch for backing its CPU buffers of 2 MB and more with transparent huge pages."""


def is_glibc() -> bool:
    """Whether the process runs on glibc (the mmap threshold and the trim apply)."""
    return _LIBC is not None


def fix_mmap_threshold() -> None:
    """Stop glibc from raising its mmap threshold (up to 32 MB) after large frees.

    Otherwise the 8-32 MB tensors of a forward pass move onto the heap, freed memory stays
    mapped between batches and fragments, and a worker's peak memory creeps up with the number
    of batches it embeds (1,096 vs 1,435 MB after 160k rows here). Not glibc: no-op.
    """
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def prepare_process(threads: int) -> None:
    """Set up an embed actor's process: ``threads`` torch threads, bounded memory, huge pages.

    Call it before the process's first tensor. With the mmap threshold fixed, every large
    tensor of a forward pass is mapped and unmapped again each batch, and each 4 KB page
    faults in zeroed: 700-800k page faults and 1.0-1.3 s of system time per 30k-row fragment
    here, a fifth of a worker's CPU. :data:`HUGE_PAGES_ENV` has torch back those buffers with
    2 MB transparent huge pages instead (where the kernel allows ``madvise``; elsewhere nothing
    changes): 70-90k faults and 0.3 s. Torch reads it at its first CPU allocation; in a process
    that allocated before (a reused Ray worker) it is too late and only the speed-up is lost.

    Args:
        threads: torch intra-op threads (at least 1 is used).
    """
    os.environ.update(HUGE_PAGES_ENV)
    torch.set_num_threads(max(1, threads))
    fix_mmap_threshold()


def release_memory() -> None:
    """Hand a finished fragment's memory back to the OS, so a worker's footprint stays flat
    however many fragments it embeds (glibc otherwise keeps freed tensor and Arrow buffers).
    No ``gc.collect()``: the tables are freed by reference counting, and a full collection
    costs ~0.1 s with torch and Ray loaded."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
