"""Property: random Arrow tables -> Parquet -> fitted spec -> batches hold, row by row, the
source values after the documented mapping (vocabulary rank / hashing) and truncation."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepsets.batch import FeatureBatch
from deepsets.features.reader import ParquetBatchReader
from deepsets.features.schema import parse_schema
from deepsets.features.spec import FeatureSpec

SCHEMA = {  # float vectors raw (encoding none): scaling has its own tests
    "id_column": "rid",
    "modality": [
        {"name": "vec", "kind": "dense", "dim": 3, "encoding": "none"},
        {"name": "fixed", "kind": "dense", "dim": 2, "encoding": "none"},
        {"name": "clicks", "kind": "id_sequence", "max_len": 4, "truncate": "keep_last"},
        {
            "name": "firsts",
            "kind": "id_sequence",
            "column": "clicks",
            "max_len": 2,
            "truncate": "keep_first",
            "hash_buckets": 13,
        },
        {"name": "tags", "kind": "id_set", "max_len": 3},
        {"name": "frames", "kind": "dense_sequence", "dim": 2, "max_len": 3, "encoding": "none"},
        {"name": "city", "kind": "categorical", "hash_buckets": 11},
        {"name": "level", "kind": "categorical", "min_count": 2},
        {"name": "num", "kind": "numeric", "columns": ["a", "b"]},
    ],
}

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
maybe_nan = st.one_of(st.none(), st.just(math.nan), st.floats(-1e3, 1e3, allow_nan=False))
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)


def _row():
    return st.fixed_dictionaries(
        {
            "vec": st.one_of(st.none(), st.just([]), st.lists(finite, min_size=3, max_size=3)),
            "fixed": st.one_of(st.none(), st.lists(finite, min_size=2, max_size=2)),
            "clicks": st.one_of(st.none(), st.lists(text, max_size=8)),
            "tags": st.one_of(st.none(), st.lists(st.integers(0, 20), max_size=6)),
            "frames": st.one_of(st.none(), st.lists(st.lists(finite, min_size=2, max_size=2), max_size=5)),
            "city": st.one_of(st.none(), text),
            "level": st.one_of(st.none(), st.integers(0, 5)),
            "a": maybe_nan,
            "b": st.one_of(st.none(), st.integers(-50, 50)),
        }
    )


def _table(rows: list[dict]) -> pa.Table:
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    return pa.table(
        {
            "rid": pa.array(range(len(rows)), pa.int64()),
            "vec": pa.array(col("vec"), pa.list_(pa.float32())),
            "fixed": pa.array(col("fixed"), pa.list_(pa.float32(), 2)),
            "clicks": pa.array(col("clicks"), pa.list_(pa.string())),
            "tags": pa.array(col("tags"), pa.list_(pa.int64())),
            "frames": pa.array(col("frames"), pa.list_(pa.list_(pa.float32(), 2))),
            "city": pa.array(col("city"), pa.string()),
            "level": pa.array(col("level"), pa.int32()),
            "a": pa.array(col("a"), pa.float64()),
            "b": pa.array(col("b"), pa.int64()),
        }
    )


def fnv1a64_reference(s: str) -> int:
    """Plain-Python FNV-1a 64 (an independent check of the vectorized one)."""
    h = 0xCBF29CE484222325
    for byte in s.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def vocab_rank(values: list, min_count: int = 1) -> dict:
    counts = Counter(values)
    kept = sorted((v for v in counts if counts[v] >= min_count), key=lambda v: (-counts[v], v))
    return {v: 2 + i for i, v in enumerate(kept)}


def expected_row(r: dict, vocab: dict) -> dict:
    out = {}
    out["vec"] = r["vec"] if r["vec"] else None
    out["fixed"] = r["fixed"]
    clicks = r["clicks"] or []
    out["clicks"] = [vocab["clicks"].get(c, 1) for c in clicks][-4:]
    out["firsts"] = [1 + fnv1a64_reference(c) % 13 for c in clicks][:2]
    out["tags"] = sorted(vocab["tags"].get(t, 1) for t in (r["tags"] or []))[:3]
    out["frames"] = (r["frames"] or [])[:3]
    out["city"] = None if r["city"] is None else 1 + fnv1a64_reference(r["city"]) % 11
    out["level"] = None if r["level"] is None else vocab["level"].get(r["level"], 1)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row(), min_size=1, max_size=40), batch_size=st.integers(1, 17), read_rows=st.integers(1, 23))
def test_batches_equal_source_after_mapping_and_truncation(rows, batch_size, read_rows):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        pq.write_table(_table(rows), path, row_group_size=7)
        spec = FeatureSpec.fit(parse_schema(SCHEMA), path)
        reader = ParquetBatchReader(spec, path, batch_size=batch_size, read_rows=read_rows)
        batches = list(reader)
    assert all(b.num_rows == batch_size for b in batches[:-1])
    batch = FeatureBatch.concat(batches)
    batch.validate()
    assert batch.num_rows == len(rows)
    assert batch.ids.tolist() == list(range(len(rows)))
    vocab = {
        "clicks": vocab_rank([c for r in rows for c in (r["clicks"] or [])]),
        "tags": vocab_rank([t for r in rows for t in (r["tags"] or [])]),
        "level": vocab_rank([r["level"] for r in rows if r["level"] is not None], min_count=2),
    }
    for i, r in enumerate(rows):
        want = expected_row(r, vocab)
        for name in ("vec", "fixed"):
            m = batch[name]
            assert bool(m.present[i]) == (want[name] is not None)
            expect = want[name] if want[name] is not None else [0.0] * m.values.shape[1]
            np.testing.assert_array_equal(m.values[i].numpy(), np.float32(expect))
        for name in ("clicks", "firsts", "tags"):
            assert batch[name].row(i).tolist() == want[name], (name, i)
            assert bool(batch[name].present[i]) == bool(r[name if name != "firsts" else "clicks"])
        frames = batch["frames"].row(i).numpy()
        np.testing.assert_array_equal(frames, np.float32(want["frames"]).reshape(-1, 2))
        for name in ("city", "level"):
            assert bool(batch[name].present[i]) == (want[name] is not None)
            assert int(batch[name].values[i]) == (want[name] or 0)
    _check_numeric(batch, rows, spec)
    _check_counts(reader, rows)


def _check_numeric(batch, rows, spec):
    a = np.array([np.nan if r["a"] is None else r["a"] for r in rows], dtype=np.float64)
    b = np.array([np.nan if r["b"] is None else r["b"] for r in rows], dtype=np.float64)
    raw = np.stack([a, b], axis=1)
    observed = ~np.isnan(raw)
    np.testing.assert_array_equal(batch["num"].observed.numpy(), observed)
    np.testing.assert_array_equal(batch["num"].present.numpy(), observed.any(axis=1))
    for k in range(2):
        col = raw[observed[:, k], k]
        mean = col.mean() if col.size else 0.0
        std = col.std() if col.size and col.std() > 0 else 1.0
        want = np.where(observed[:, k], (raw[:, k] - mean) / std, 0.0)
        np.testing.assert_allclose(batch["num"].values[:, k].numpy(), want, rtol=1e-4, atol=1e-4)
    assert spec.fitted["num"].stats["missing_values"] == int((~observed).sum())


def _check_counts(reader, rows):
    long_clicks = sum(1 for r in rows if r["clicks"] and len(r["clicks"]) > 4)
    assert reader.counts["clicks"].truncated_rows == long_clicks
    assert reader.counts["clicks"].dropped_elements == sum(max(0, len(r["clicks"] or []) - 4) for r in rows)
    assert reader.counts["frames"].truncated_rows == sum(1 for r in rows if r["frames"] and len(r["frames"]) > 3)
    assert reader.counts["tags"].truncated_rows == sum(1 for r in rows if r["tags"] and len(r["tags"]) > 3)
