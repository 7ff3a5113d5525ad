"""The output folder of ``deepsets embed``: every name in it, in one place.

    <output>/
        _manifest.json          the job's plan: model, inputs, fragments (written first)
        _SUCCESS.json           the job's summary (written last: the job finished)
        _job.lock               the running job's claim on the folder
        embeddings/part-00000-00000.parquet   one part per fragment: source_file, source_row,
                                              the id column, embedding [, vector_<m>, present_<m>]
        rejects/part-00000-00000.parquet      the rows of that fragment a check rejected, with
                                              source_file, source_row, reject_column, reject_reason

The worker that writes the parts (:mod:`.writer`), the folder's set-up, resume and accounting
(:mod:`.output`) and the readers of a finished folder all take these names from here.
"""

from __future__ import annotations

import re

from deepsets.features import storage

EMBEDDINGS, REJECTS = "embeddings", "rejects"
"""The sub folders: one part per fragment in each (a rejects part only for a fragment with rejected rows)."""

MANIFEST, SUCCESS, LOCK = "_manifest.json", "_SUCCESS.json", "_job.lock"

FINGERPRINT_KEY = b"deepsets.weights_sha256"
"""The part metadata naming the model that wrote it (the sha256 of its weights)."""

SOURCE_FILE, SOURCE_ROW = "source_file", "source_row"
REJECT_COLUMN, REJECT_REASON = "reject_column", "reject_reason"
RESERVED = (SOURCE_FILE, SOURCE_ROW, "embedding", REJECT_COLUMN, REJECT_REASON)
"""Column names the job writes, which an input's id column may therefore not have."""

OURS = re.compile(r"^\.?part-\d{5,}-\d{5,}\.parquet(\.tmp-\d+)?$")
"""What this job writes into embeddings/ and rejects/ (finished parts and hidden temp files):
``Fragment.name`` pads indexes to five digits, and a larger index has more."""


def part_path(out: str, fragment_name: str) -> str:
    """Where a fragment's embeddings part goes in the output folder ``out``."""
    return storage.join(out, EMBEDDINGS, fragment_name)


def rejects_path(out: str, fragment_name: str) -> str:
    """Where a fragment's rejected rows go in the output folder ``out``."""
    return storage.join(out, REJECTS, fragment_name)
