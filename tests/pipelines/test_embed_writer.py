"""One fragment's output files (``FragmentWriter``): the tables it builds from rows and model
outputs, rejects before the part, and nothing visible before ``finish``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepsets.features.fragments import Fragment
from deepsets.pipelines.embedding.layout import (
    EMBEDDINGS,
    FINGERPRINT_KEY,
    REJECT_COLUMN,
    REJECT_REASON,
    REJECTS,
    SOURCE_FILE,
    SOURCE_ROW,
)
from deepsets.pipelines.embedding.writer import FragmentWriter

METADATA = {FINGERPRINT_KEY.decode(): "ab" * 32, "deepsets.model_uri": "models:/m-1"}


@pytest.fixture
def out(tmp_path):
    for sub in (EMBEDDINGS, REJECTS):
        (tmp_path / sub).mkdir()
    return tmp_path


def _fragment(rows: int) -> Fragment:
    return Fragment(path="/data/part-0.parquet", file_index=0, index=1, start=0, stop=rows)


def test_rows_and_rejects_are_written_with_their_source_rows_when_finished(out):
    writer = FragmentWriter(str(out), _fragment(5), "item_id", METADATA)
    table = pa.table({"item_id": pa.array([10, 11, 12, 13, 14], pa.int32()), "price": [1.0, None, 3.0, 4.0, -1.0]})
    writer.reject(table, 100, [(np.array([1]), "price", "missing"), (np.array([4]), "price", "negative")])
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)  # (3, 2)
    writer.write(table, 100, np.array([0, 2, 3]), {"embedding": vectors, "present_image": np.array([1, 0, 1], bool)})
    name = _fragment(5).name
    assert not (out / EMBEDDINGS / name).exists() and not (out / REJECTS / name).exists()

    counts = writer.finish()

    assert (counts["name"], counts["rows_in"], counts["rows_out"], counts["rows_rejected"]) == (name, 5, 3, 2)
    part = pq.read_table(out / EMBEDDINGS / name)
    assert part.column_names == [SOURCE_FILE, SOURCE_ROW, "item_id", "embedding", "present_image"]
    assert part.schema.field("item_id").type == pa.int64()
    assert part.schema.field("embedding").type == pa.list_(pa.float32(), 2)
    assert part.column(SOURCE_ROW).to_pylist() == [100, 102, 103]
    assert part.column("item_id").to_pylist() == [10, 12, 13]
    assert part.column("embedding").to_pylist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert part.schema.metadata[FINGERPRINT_KEY] == b"ab" * 32
    assert part.schema.metadata[b"deepsets.source_file"] == b"/data/part-0.parquet"
    rejects = pq.read_table(out / REJECTS / name)
    assert rejects.column(SOURCE_ROW).to_pylist() == [101, 104]
    assert rejects.column("item_id").to_pylist() == [11, 14]
    assert rejects.column(REJECT_COLUMN).to_pylist() == ["price", "price"]
    assert rejects.column(REJECT_REASON).to_pylist() == ["missing", "negative"]


def test_a_fragment_without_an_output_table_is_refused_and_a_discarded_one_leaves_nothing(out):
    writer = FragmentWriter(str(out), _fragment(2), None, METADATA)
    with pytest.raises(ValueError, match=r"part-00000-00001.parquet: no output table written"):
        writer.finish()
    table = pa.table({"price": [1.0, 2.0]})
    writer.write(table, 0, np.array([0, 1]), {"embedding": np.zeros((2, 4), np.float32)})
    writer.discard()
    assert list((out / EMBEDDINGS).iterdir()) == [] and list((out / REJECTS).iterdir()) == []


def test_a_leftover_rejects_file_of_an_unfinished_attempt_is_removed(out):
    stale = out / REJECTS / _fragment(2).name
    stale.write_bytes(b"from an attempt that did not finish")
    writer = FragmentWriter(str(out), _fragment(2), None, METADATA)
    assert not stale.exists()
    writer.write(pa.table({"price": [1.0, 2.0]}), 0, np.array([0, 1]), {"embedding": np.ones((2, 3), np.float32)})
    assert writer.finish()["rows_rejected"] == 0 and not stale.exists()
