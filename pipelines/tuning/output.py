"""The output folder of ``deepsets tune``: what a search writes there, and how a folder holding an
earlier search's results is refused or cleared (a report must never show an earlier search's file)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

from deepsets.pipelines.errors import JobError

TRIALS = "trials"
OUTPUTS = ("best.toml", "trials.md", "trials.json", "spec.json", TRIALS, "ray_results", "tune")
"""Everything a search writes in its output folder (files and folders)."""


def earlier_outputs(out: Path) -> List[str]:
    """The names of :data:`OUTPUTS` present in ``out`` (an empty folder counts as absent)."""
    return [
        name for name in OUTPUTS if (out / name).is_file() or ((out / name).is_dir() and any((out / name).iterdir()))
    ]


def prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a new search: created when missing; an earlier search's outputs
    refused, or with ``overwrite`` deleted (other files in ``out`` are left alone).

    Raises:
        JobError: ``out`` holds an earlier search's outputs and ``overwrite`` is False.
    """
    found = earlier_outputs(out)
    if found and not overwrite:
        raise JobError(
            f"--out {out} holds an earlier search ({', '.join(found)}): pass --overwrite to replace it, "
            "or choose another --out"
        )
    for name in found:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (out / TRIALS).mkdir(parents=True, exist_ok=True)
