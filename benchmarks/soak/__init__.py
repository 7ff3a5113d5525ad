"""Soak: jobs of every command back to back, counting what each one leaves behind.

    python -m benchmarks.soak [--quick] [--embed-jobs N] [--jobs N] [--in-process N] [--rows N] [--workdir DIR]

A nightly batch job runs every night for months, and whatever one run leaves behind piles up.
This runs ``deepsets embed`` (1 and 2 workers, alternately), ``train``, ``ablate``, ``retrieve``
and ``tune`` on a small generated workload, each as its own command-line process with its own
local Ray, as a scheduler would; then ``embed``, ``retrieve`` and ``ablate`` again through the
Python API in this one process under one Ray it starts first, as a long-lived service would, to
watch the driver's file descriptors and threads (:mod:`benchmarks.soak.in_process`).

After each job it counts what is left:
    processes  -- every process seen below the job's process while it ran (polled), and every
                  worker its Ray session's logs name (the session folder carries the job's pid),
                  still running once the job has exited; never matched by name. Any found is
                  dumped with py-spy (when installed), then ended, and counted;
    reaped     -- processes the job itself had to end after its Ray's shutdown (its
                  ``warning: process ...`` lines; see deepsets.pipelines.ray_processes);
    files      -- lock files (``_job.lock``, a held ``run.claim``) and temporary files (``*.tmp*``)
                  left in the job's output folder;
    memory     -- the machine's used memory (noisy: other work shares the machine), and for the
                  in-process jobs this process's open fds, threads and resident memory.

One line per job; the last line is one JSON object (``jobs``, ``leftover_processes``,
``leftover_fds``, ``leftover_mb``, ``max_rss_growth_mb``, ...). The exit status is 1 when any
job failed or left a process, a lock or temporary file, or a file descriptor behind.
"""

from benchmarks.soak.accounting import leftover_files
from benchmarks.soak.cli_jobs import schedule
from benchmarks.soak.main import main

__all__ = ["leftover_files", "main", "schedule"]
