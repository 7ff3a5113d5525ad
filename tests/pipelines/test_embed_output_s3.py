"""The embed job's output on object storage, against a real S3-compatible server: a part
appears whole at its commit (one PUT, no temp object, no rename), the folder lock refuses a
second job, and resume keeps good parts and redoes bad ones exactly as on a local disk.
(The whole job on S3 and on two Ray nodes: ``test_cluster.py``.)"""

from __future__ import annotations

import json
import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepsets.features import storage
from deepsets.features.fragments import plan_fragments
from deepsets.pipelines.embedding.layout import EMBEDDINGS, FINGERPRINT_KEY, LOCK, MANIFEST
from deepsets.pipelines.embedding.output import (
    OutputLock,
    account,
    parts_to_do,
    prepare_output,
    read_metadata,
)
from deepsets.pipelines.embedding.parts import PartFile
from deepsets.pipelines.errors import JobError


@pytest.fixture
def out(s3_server):
    return f"s3://deepsets/embed-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fragments(s3_server):
    source = f"s3://deepsets/inputs-{uuid.uuid4().hex[:8]}/rows.parquet"
    store, inner = storage.filesystem(source)
    with store.open_output_stream(inner) as handle:
        pq.write_table(pa.table({"id": list(range(250))}), handle, row_group_size=100)
    return plan_fragments([source], 100)


def write_part(out: str, fragment, rows: int, fingerprint: str = "w1") -> None:
    part = PartFile(storage.join(out, EMBEDDINGS, fragment.name))
    part.write(
        pa.table({"id": list(range(rows)), "embedding": [[0.5, 1.0]] * rows}), {FINGERPRINT_KEY.decode(): fingerprint}
    )
    part.commit()


def test_a_part_appears_whole_at_commit_and_an_abandoned_one_leaves_nothing(out):
    target = storage.join(out, EMBEDDINGS, "part-00000-00000.parquet")
    part = PartFile(target)
    part.write(pa.table({"x": [1, 2]}), {"k": "v"})
    part.write(pa.table({"x": [3]}), {"k": "v"})
    assert not storage.exists(target) and storage.children(storage.join(out, EMBEDDINGS)) == []  # nothing until commit
    part.commit()
    part.discard()
    assert storage.children(storage.join(out, EMBEDDINGS)) == [("part-00000-00000.parquet", False)]
    assert read_metadata(target).num_rows == 3 and read_metadata(target).metadata[b"k"] == b"v"
    abandoned = PartFile(storage.join(out, EMBEDDINGS, "part-00000-00001.parquet"))
    abandoned.write(pa.table({"x": [1]}), {})
    abandoned.discard()
    assert [name for name, _ in storage.children(storage.join(out, EMBEDDINGS))] == ["part-00000-00000.parquet"]


def test_the_lock_refuses_a_second_job_and_takes_over_a_dead_ones(out):
    with OutputLock(out):
        holder = json.loads(storage.read_text(storage.join(out, LOCK)))
        assert holder["pid"] == os.getpid()
        with pytest.raises(JobError, match=f"is in use by another embed job \\(pid {os.getpid()}"):
            second = OutputLock(out)
            second.me = {**second.me, "pid": 999_999_999}  # another process of this host, alive: ours
            second.__enter__()
    assert not storage.exists(storage.join(out, LOCK))  # released
    storage.write_text(
        storage.join(out, LOCK),
        json.dumps({"host": OutputLock(out).me["host"], "pid": 2**22 + 12345, "started": "then"}),
    )
    with OutputLock(out) as lock:  # that pid is not running: stale
        assert lock.took_over["pid"] == 2**22 + 12345


def test_resume_on_s3_keeps_good_parts_and_redoes_bad_ones(out, fragments):
    manifest = {"format": 2, "weights_sha256": "w1", "inputs": [], "fragments": [f.to_dict() for f in fragments]}
    planned = prepare_output(out, dict(manifest), resume=False, overwrite=False)
    assert [f.rows for f in planned] == [100, 100, 50] and storage.exists(storage.join(out, MANIFEST))
    write_part(out, planned[0], 100)
    write_part(out, planned[1], 99)  # short: redone
    write_part(out, planned[2], 50, fingerprint="w2")  # another model: redone
    with pytest.raises(JobError, match="pass --resume to complete it, or --overwrite"):
        prepare_output(out, dict(manifest), resume=False, overwrite=False)
    resumed = prepare_output(out, dict(manifest), resume=True, overwrite=False)
    todo, redone = parts_to_do(out, resumed, "w1")
    assert [f.name for f in todo] == [planned[1].name, planned[2].name]
    assert [r["problem"] for r in redone] == [
        "99 rows written + 0 rejected, the fragment has 100",
        "written by another model (weights w2)",
    ]
    with pytest.raises(JobError, match="2 fragment\\(s\\) have no output"):
        account(out, resumed, None, "w1")
    for fragment in todo:
        write_part(out, fragment, fragment.rows)
    summary = account(out, resumed, "id", "w1")
    assert (summary["rows_in"], summary["rows_out"], summary["rows_rejected"]) == (250, 250, 0)
    assert summary["duplicate_ids"]["ids"] == 100  # ids 0..49 in three parts, 50..99 in two (written that way above)
